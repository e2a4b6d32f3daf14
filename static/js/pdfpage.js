// The cited PDF page itself (PDF.js): drawn on a canvas with its text layer over it, and the
// supporting sentence marked in the text layer. Matching ignores case, spaces, line breaks and
// hyphenation (the extracted text joined words the PDF breaks across lines). If the page cannot
// be drawn, the extracted text is shown instead, with a notice.
const section = document.getElementById("pdf-page");
const script = document.querySelector("script[data-pdfjs]");

function letters(text) {
  // each kept character with the index of the text item it came from
  return text.toLowerCase().replace(/[^a-z0-9]/g, "");
}

function fallBack(reason) {
  section.querySelector(".pdf-status").textContent =
    `The PDF page could not be shown (${reason}); its extracted text is below.`;
  section.querySelector(".pdf-canvas-wrap").hidden = true;
  section.classList.add("failed");
  document.getElementById("page-text-view").hidden = false;
}

function mark(textLayer, wanted) {
  const items = textLayer.textContentItemsStr;
  let joined = "";
  const owner = [];
  items.forEach((item, i) => {
    const kept = letters(item);
    joined += kept;
    for (let k = 0; k < kept.length; k++) owner.push(i);
  });
  const target = letters(wanted);
  if (!target) return 0;
  // the whole sentence, else its first half, else its first 40 letters
  for (const probe of [target, target.slice(0, Math.ceil(target.length / 2)), target.slice(0, 40)]) {
    const at = joined.indexOf(probe);
    if (probe.length >= 12 && at >= 0) {
      const hit = new Set(owner.slice(at, at + probe.length));
      for (const i of hit) textLayer.textDivs[i]?.classList.add("highlight");
      const first = textLayer.textDivs[Math.min(...hit)];
      first?.scrollIntoView({ block: "center" });
      return hit.size;
    }
  }
  return 0;
}

async function show() {
  const pdfjs = await import(script.dataset.pdfjs);
  pdfjs.GlobalWorkerOptions.workerSrc = section.dataset.worker;
  const pdf = await pdfjs.getDocument({
    url: section.dataset.url,
    isEvalSupported: false,
    standardFontDataUrl: section.dataset.fonts,
    cMapUrl: section.dataset.cmaps,
    cMapPacked: true,
  }).promise;
  const page = await pdf.getPage(Number(section.dataset.page));
  const width = Math.min(section.clientWidth || 900, 1100);
  const viewport = page.getViewport({ scale: width / page.getViewport({ scale: 1 }).width });
  const canvas = section.querySelector("canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.floor(viewport.width * ratio);
  canvas.height = Math.floor(viewport.height * ratio);
  canvas.style.width = `${Math.floor(viewport.width)}px`;
  canvas.style.height = `${Math.floor(viewport.height)}px`;
  const wrap = section.querySelector(".pdf-canvas-wrap");
  wrap.style.setProperty("--scale-factor", viewport.scale);
  wrap.style.width = `${Math.floor(viewport.width)}px`;
  wrap.style.height = `${Math.floor(viewport.height)}px`;
  await page.render({
    canvasContext: canvas.getContext("2d"),
    viewport,
    transform: ratio !== 1 ? [ratio, 0, 0, ratio, 0, 0] : null,
  }).promise;
  const textLayer = new pdfjs.TextLayer({
    textContentSource: page.streamTextContent(),
    container: section.querySelector(".textLayer"),
    viewport,
  });
  await textLayer.render();
  const status = section.querySelector(".pdf-status");
  if (section.dataset.mark) {
    const marked = mark(textLayer, section.dataset.mark);
    status.textContent = marked
      ? "The supporting text is marked on the page."
      : "The cited text could not be found on the rendered page; it is shown above.";
  } else {
    status.textContent = "";
  }
  section.dataset.rendered = "true";
}

if (section && script) {
  show().catch((error) => fallBack(error?.message || String(error)));
}
