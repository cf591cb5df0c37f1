"""Stevens' conclusions (UNP ch. 30) judged against measured totals, pure: as the last wave measured
them, and when the book is right."""

from __future__ import annotations

import pandas as pd

from loadtest.report.rules import stevens


def book(**totals: float) -> pd.DataFrame:
    names = {
        "serv00": "blocking",
        "serv01": "forking",
        "serv02": "preforked",
        "serv06": "threaded",
        "serv07": "prethreaded",
        "serv08": "threadpool",
    }
    rows = [{"design": names[k], "book": f"{k}: {stevens.BOOK_DESIGNS[k]}", "total_us": v} for k, v in totals.items()]
    t = pd.DataFrame(rows)
    t["delta_us"] = t["total_us"] - totals["serv00"]
    return t


def test_stevens_conclusions_as_measured_in_the_last_wave() -> None:
    said = stevens.conclusions(book(serv00=45.7, serv01=2269.8, serv02=67.5, serv06=212.6, serv07=54.8, serv08=45.9))
    text = " | ".join(said)
    assert '"Fork per client is by far the most expensive": holds here — forking 2,270 µs' in text
    assert "×10.7 the next dearest (threaded" in text
    assert '"Pools cut process-control CPU by a factor of 10 or more": holds' in text
    assert 'one thread accept and hand off": does not hold' in text
    assert '"Threads are normally much faster than processes": holds in part' in text


def test_stevens_conclusions_when_the_book_is_right() -> None:
    said = " | ".join(stevens.conclusions(book(serv00=50, serv01=500, serv02=100, serv06=100, serv07=55, serv08=70)))
    assert 'by far the most expensive": holds' in said and 'hand off": holds' in said
    assert 'much faster than processes": holds here' in said
