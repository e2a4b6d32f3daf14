from regqa.documents.chunking import PageText, chunk_pages, embedding_text, is_heading
from regqa.documents.ingest import read_pdf_pages

from .conftest import PDFS


def words(n: int, prefix: str) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def test_every_chunk_knows_the_pages_it_spans():
    pages = [PageText(1, words(100, "a")), PageText(2, words(100, "b")), PageText(3, words(100, "c"))]
    chunks = chunk_pages(pages, words=80, overlap=20)
    assert chunks[0].page_start == 1 and chunks[0].page_end == 1
    spanning = [c for c in chunks if c.page_start != c.page_end]
    assert spanning, "a window across a page break must record both pages"
    for chunk in chunks:
        first, last = chunk.text.split()[0], chunk.text.split()[-1]
        assert chunk.page_start == {"a": 1, "b": 2, "c": 3}[first[0]]
        assert chunk.page_end == {"a": 1, "b": 2, "c": 3}[last[0]]
    # every word of the document is in some chunk, in order
    seen = " ".join(c.text for c in chunks)
    for token in ("a0", "a99", "b50", "c99"):
        assert token in seen


def test_windows_overlap_by_the_configured_number_of_words():
    chunks = chunk_pages([PageText(1, words(200, "w"))], words=100, overlap=25)
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert len(first) == 100
    assert first[-25:] == second[:25]
    assert chunks[-1].text.split()[-1] == "w199"


def test_sections_start_new_chunks_and_label_them():
    page1 = "§ 215.1 Authority, purpose, and scope.\n" + words(30, "x") + "\n§ 215.2 Definitions.\n" + words(30, "y")
    page2 = words(30, "z")
    chunks = chunk_pages([PageText(1, page1), PageText(2, page2)], words=150, overlap=20)
    assert [c.section for c in chunks] == ["§ 215.1 Authority, purpose, and scope.", "§ 215.2 Definitions."]
    assert "x0" in chunks[0].text and "y0" not in chunks[0].text
    # the second section runs on to page 2
    assert chunks[1].page_start == 1 and chunks[1].page_end == 2
    # the heading is embedded with every window of its section, once
    assert embedding_text(chunks[1].section, chunks[1].text) == chunks[1].text
    assert embedding_text("§ 215.2 Definitions.", "z0 z1") == "§ 215.2 Definitions.\nz0 z1"


def test_running_headers_and_page_numbers_are_dropped_and_hyphens_joined():
    body = ["alpha beta {n}", "The regu-", "lation applies to banks", "gamma delta {n}", "epsilon {n}"]
    pages = [
        PageText(
            n, "\n".join([f"Federal Reserve System § 215.{n}", *(line.format(n=n * 7) for line in body), str(380 + n)])
        )
        for n in range(1, 7)
    ]
    chunks = chunk_pages(pages, words=500, overlap=0)
    text = " ".join(c.text for c in chunks)
    assert "Federal Reserve System" not in text
    assert "regulation applies" in text
    assert "381" not in text.split()


def test_heading_detection():
    assert is_heading("§ 208.3 Application and conditions for membership in the Federal Reserve System.")
    assert is_heading("Subpart A—General Membership and Branching Requirements")
    assert is_heading("3.2.1 Capital Requirements")
    assert is_heading("STATEMENT ON LONGER-RUN GOALS AND MONETARY POLICY STRATEGY")
    assert not is_heading("§ 215.4 of this part applies to extensions of credit.")
    assert not is_heading("(a) Affiliate means any company of which a member bank is a subsidiary")


def test_real_fixture_pdf_keeps_pages_and_rule_headings():
    pages = read_pdf_pages(PDFS / "12cfr215.pdf")
    assert len(pages) == 12
    chunks = chunk_pages(pages)
    definitions = [c for c in chunks if c.section.startswith("§ 215.2 Definitions")]
    assert definitions and definitions[0].page_start == 2
    assert any("Company means any corporation" in c.text for c in definitions)


def test_a_heading_hyphenated_across_lines_is_joined():
    page = "§ 208.6 Establishment and mainte-\nnance of branches.\n(a) Branching. A member bank may establish branches."
    chunks = chunk_pages([PageText(1, page)], words=100, overlap=10)
    assert chunks[0].section == "§ 208.6 Establishment and maintenance of branches."


def test_title_and_section_give_context_to_the_embedded_text():
    assert (
        embedding_text("§ 215.2 Definitions.", "z0 z1", "Regulation O") == "Regulation O\n§ 215.2 Definitions.\nz0 z1"
    )
