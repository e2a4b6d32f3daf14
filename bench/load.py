"""Concurrent analysts against a running RegQA: each logs in, asks a different demo question and
reads its answer stream to the end, while a prober loads the login page every 2 s. Stops by
itself (bounded analysts, bounded time).

    make run &                          # or REGQA_LLM_SERVER=llama-server make run, etc.
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --analysts 8
    .venv/bin/python bench/load.py --analysts 8 --serial   # the same questions one after another

Reports answers per minute (answers over the time from the start to the last one's end), answer
time p50/p95 (ask to the stream's "done"), time to passages (ask to the page that shows them),
time to the instant quote (ask to its request's reply, made while the stream opens, as a browser does),
login-page latency p50/p95/max during the load, and errors.
The password is the demo one (var/demo-password.txt) unless --password is given.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import threading
import time
from pathlib import Path

import httpx2 as httpx  # the HTTP client the openai package brings
from demo_latency import QUESTIONS as DEMO_QUESTIONS

# The answerable demo questions of bench/demo_latency.py, and five more from the same PDFs.
QUESTIONS = DEMO_QUESTIONS[:5] + [
    "Who counts as an executive officer of a member bank under Regulation O?",
    "What does Regulation K say about investments by member banks in foreign companies?",
    "How does the FOMC judge maximum employment?",
    "What is the lending limit for extensions of credit to insiders under Regulation O?",
    "Which depository organizations does Regulation L apply to?",
]
ROOT = Path(__file__).resolve().parent.parent


def login(client: httpx.Client, user: str, password: str) -> None:
    page = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    response = client.post(
        "/login/", data={"username": user, "password": password, "csrfmiddlewaretoken": token.group(1)}
    )
    if response.status_code != 302:
        raise RuntimeError(f"login failed: HTTP {response.status_code}")


def instant_quote(client: httpx.Client, path: str, started: float, out: dict) -> None:
    try:
        if client.get(path, headers={"HX-Request": "true"}).status_code != 200:
            raise RuntimeError("instant quote: not 200")
        out["quote_s"] = time.monotonic() - started
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"


def analyst(url: str, user: str, password: str, question: str, deadline: float, out: dict) -> None:
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=max(deadline - time.monotonic(), 1))) as client:
            login(client, user, password)
            home = client.get("/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home.text)
            started = time.monotonic()
            shown = client.post(
                "/ask/",
                data={"question": question, "csrfmiddlewaretoken": token.group(1) if token else ""},
                headers={"HX-Request": "true", "X-CSRFToken": client.cookies.get("csrftoken") or ""},
            )
            out["passages_s"] = time.monotonic() - started
            stream = re.search(r'sse-connect="([^"]+)"', shown.text)
            if shown.status_code != 200:
                raise RuntimeError(f"ask: HTTP {shown.status_code}")
            quote = re.search(r'hx-get="([^"]+/instant/)"', shown.text)
            fetching = None
            if quote is not None:  # the page asks for the instant quote while the stream opens, as a browser does
                fetching = threading.Thread(target=instant_quote, args=(client, quote.group(1), started, out))
                fetching.start()
            if stream is not None:  # declined before the model ran: no stream
                with client.stream("GET", stream.group(1)) as events:
                    for line in events.iter_lines():
                        if line.startswith("event: done"):
                            break
            out["answer_s"] = time.monotonic() - started
            out["finished"] = time.monotonic()
            if fetching is not None:
                fetching.join()
    except Exception as exc:  # every failure counts as an error of the load test
        out["error"] = f"{type(exc).__name__}: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--analysts", type=int, default=8)
    parser.add_argument("--user", default="analyst")
    parser.add_argument("--password", default="")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--probe-every", type=float, default=2.0)
    parser.add_argument(
        "--serial", action="store_true", help="one analyst asks the same questions one after another (the serial rate)"
    )
    args = parser.parse_args()
    password = args.password or (ROOT / "var" / "demo-password.txt").read_text().strip()
    deadline = time.monotonic() + args.max_seconds
    results: list[dict] = [{} for _ in range(args.analysts)]
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.analysts)]

    def one_after_another() -> None:
        for question, out in zip(questions, results, strict=True):
            analyst(args.url, args.user, password, question, deadline, out)

    threads = (
        [threading.Thread(target=one_after_another)]
        if args.serial
        else [
            threading.Thread(target=analyst, args=(args.url, args.user, password, q, deadline, out))
            for q, out in zip(questions, results, strict=True)
        ]
    )
    probes: list[float] = []
    probe_errors: list[str] = []
    started = time.monotonic()
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=args.url, timeout=30) as prober:
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                if prober.get("/login/").status_code != 200:
                    probe_errors.append("login page not 200")
            except httpx.HTTPError as exc:
                probe_errors.append(repr(exc))
            probes.append(time.monotonic() - t0)
            time.sleep(max(args.probe_every - (time.monotonic() - t0), 0))
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0) + 5)
    elapsed = time.monotonic() - started
    done = [r["answer_s"] for r in results if "answer_s" in r]
    last = max((r["finished"] for r in results if "finished" in r), default=started + elapsed)
    errors = [r["error"] for r in results if "error" in r] + probe_errors
    errors += ["unfinished" for r in results if "answer_s" not in r and "error" not in r]

    quotes = [r["quote_s"] for r in results if "quote_s" in r]

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")

    report = {
        "analysts": 1 if args.serial else args.analysts,
        "answers": len(done),
        "answers_per_minute": round(len(done) / ((last - started) / 60), 2) if done else 0.0,
        "answer_p50_s": round(statistics.median(done), 1) if done else None,
        "answer_p95_s": round(pct(done, 0.95), 1) if done else None,
        "passages_max_s": round(max((r["passages_s"] for r in results if "passages_s" in r), default=0), 2),
        "passages_s": sorted(round(r["passages_s"], 2) for r in results if "passages_s" in r),
        "quote_p50_s": round(statistics.median(quotes), 2) if quotes else None,
        "quote_max_s": round(max(quotes), 2) if quotes else None,
        "login_p50_s": round(statistics.median(probes), 3) if probes else None,
        "login_p95_s": round(pct(probes, 0.95), 3) if probes else None,
        "login_max_s": round(max(probes), 3) if probes else None,
        "errors": errors,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
