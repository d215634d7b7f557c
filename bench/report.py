#!/usr/bin/env python3
"""Turn one benchmark run (bench/run.sh) into results.csv, summary.md and
the data files of the gnuplot plots.

    python3 bench/report.py bench/results/<date>

Reads raw/runs.tsv (one line per pgbench run, its output file under raw/)
and raw/metrics.tsv (everything else the harness measured).  Every number
of the summary is a median over the repeats; ratios are taken between
medians.  Standard library only.
"""
import csv
import math
import os
import re
import statistics
import sys
from collections import defaultdict

OUT = sys.argv[1] if len(sys.argv) > 1 else "."
RAW = os.path.join(OUT, "raw")
PLOT = os.path.join(RAW, "plot")

# request-path scenarios: (name, description, naive partner or None)
REQUEST = [
    ("select1", "SELECT 1 (the floor)", None),
    ("verify_hot", "verify_key, one key", "naive_verify_hot"),
    ("naive_verify_hot", "naive: sha256 + unique-index lookup", None),
    ("check_hot", "check_request, one hot key", "naive_limit_hot"),
    ("naive_limit_hot", "naive: UPDATE counter row, hot key", None),
    ("check_100", "check_request, 100 keys", "naive_limit_100"),
    ("naive_limit_100", "naive: UPDATE counter row, 100 keys", None),
    ("log", "log_request", "naive_insert_sync"),
    ("naive_insert_sync", "naive: one-row INSERT, synchronous_commit on", None),
    ("naive_insert_async", "naive: one-row INSERT, synchronous_commit off", None),
    ("check_log_100", "check_request + log_request (one API request), 100 keys", "naive_gateway_100"),
    ("naive_gateway_100", "naive: verify + counter UPDATE + INSERT, 100 keys", None),
]
PLOT_GROUPS = [
    ("verify", ["select1", "verify_hot", "naive_verify_hot"]),
    ("limiter", ["select1", "check_hot", "check_100", "naive_limit_hot", "naive_limit_100"]),
    ("logging", ["select1", "log", "naive_insert_sync", "naive_insert_async"]),
    ("gateway", ["select1", "check_log_100", "naive_gateway_100"]),
]
DASH = [
    ("summary", "usage_summary"),
    ("by_method", "usage_by_method"),
    ("by_status", "usage_by_response_status"),
    ("top_endpoints", "top_endpoints"),
    ("timeseries", "usage_timeseries, 1 h buckets"),
    ("log_page1", "request_log page 1 (2 filters)"),
    ("log_page100", "request_log page 100 (2 filters)"),
]
LIVE = [
    ("summary", "usage_summary, default bounds"),
    ("by_method", "usage_by_method, default bounds"),
    ("by_status", "usage_by_response_status, default bounds"),
    ("top_endpoints", "top_endpoints, default bounds"),
    ("timeseries", "usage_timeseries, default bounds (30 days, 1 h buckets)"),
    ("minutes", "usage_timeseries, last hour, 1-minute buckets"),
    ("log_page1", "request_log page 1 (2 filters)"),
]


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def parse_pgbench(path):
    """tps, latency (ms), transactions, error text (None when clean)."""
    try:
        text = open(os.path.join(OUT, path), errors="replace").read()
    except OSError as e:
        return None, None, None, str(e)
    tps = re.search(r"^tps = ([0-9.]+)", text, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    n = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    err = None
    if "aborted" in text or not tps or re.search(r"^pgbench: error", text, re.M):
        m = re.search(r"^pgbench: error: (.*)$", text, re.M)
        err = m.group(1)[:160] if m else "no result"
    return (float(tps.group(1)) if tps else None,
            float(lat.group(1)) if lat else None,
            int(n.group(1)) if n else None, err)


def parse_statement_latencies(path):
    """The per-statement latencies (ms) of a pgbench -r run, in script order."""
    text = open(os.path.join(OUT, path), errors="replace").read()
    part = text.split("statement latencies in milliseconds", 1)
    if len(part) < 2:
        return []
    out = []
    for line in part[1].splitlines()[1:]:
        m = re.match(r"\s+([0-9.]+)\s+(?:[0-9]+\s+)?(.*)", line)
        if not m:
            break
        if m.group(2).startswith("\\"):
            continue  # meta commands (the warm-up's \if)
        out.append(float(m.group(1)))
    return out


def med(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    m = statistics.median(values)
    return (max(values) - min(values)) / m if m else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fx(v):
    """a ratio"""
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}×"
    if v >= 10:
        return f"{v:.1f}×"
    return f"{v:.2f}×"


def fpct(v):
    return "–" if v is None else f"±{100 * v / 2:.0f} %"


def fbytes(v):
    if v is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(v) < 1024 or unit == "GB":
            return f"{v:,.0f} {unit}" if unit == "B" else f"{v:,.1f} {unit}"
        v /= 1024


def rows_label(n):
    n = int(n)
    return f"{n // 1000000}M" if n % 1000000 == 0 else (f"{n // 1000}k" if n % 1000 == 0 else str(n))


def main():
    runs = read_tsv(os.path.join(RAW, "runs.tsv"))
    metrics = read_tsv(os.path.join(RAW, "metrics.tsv"))

    # ---- results.csv: every measurement ----
    rows_out = []
    failures = []
    samples = defaultdict(lambda: defaultdict(list))  # (phase, scen, var, clients, rows) -> metric -> values
    for r in runs:
        tps, lat, n, err = parse_pgbench(r["file"])
        key = (r["phase"], r["scenario"], r["variant"], r["clients"], r["rows"])
        base = [r["phase"], r["scenario"], r["variant"], r["clients"], r["rows"], r["repeat"]]
        if err:
            failures.append((r, err))
            rows_out.append(base + ["error", "", err])
            continue
        if r["variant"] in ("pair", "pages"):
            # one script: our statement, then the naive one (pgbench -r);
            # "pages": our request_log page 1, then our page 100
            lats = parse_statement_latencies(r["file"])
            names = ("ours", "naive") if r["variant"] == "pair" else ("page1", "page100")
            for var, slat in zip(names, lats):
                k2 = (r["phase"], r["scenario"], var, r["clients"], r["rows"])
                b2 = [r["phase"], r["scenario"], var, r["clients"], r["rows"], r["repeat"]]
                samples[k2]["latency_ms"].append(slat)
                rows_out.append(b2 + ["latency_ms", f"{slat:.3f}", "ms"])
                if n is not None:
                    rows_out.append(b2 + ["executions", str(n), ""])
            continue
        samples[key]["tps"].append(tps)
        rows_out.append(base + ["tps", f"{tps:.1f}", "1/s"])
        if lat is not None:
            samples[key]["latency_ms"].append(lat)
            rows_out.append(base + ["latency_ms", f"{lat:.3f}", "ms"])
        if n is not None:
            rows_out.append(base + ["transactions", str(n), ""])
    M = defaultdict(list)  # (phase, scen, var, rows, metric) -> [values]
    info = {}
    for m in metrics:
        rows_out.append([m["phase"], m["scenario"], m["variant"], m["clients"], m["rows"], m["repeat"],
                         m["metric"], m["value"], m["unit"]])
        try:
            val = float(m["value"])
        except ValueError:
            val = None
        M[(m["phase"], m["scenario"], m["variant"], m["rows"], m["metric"])].append(val)
        if m["phase"] == "env":
            info[m["metric"]] = m["value"]
        if m["phase"] == "dataset" and m["scenario"] == "check":
            info[("check", m["variant"], m["rows"])] = m["value"]
    with open(os.path.join(OUT, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phase", "scenario", "variant", "clients", "rows", "repeat", "metric", "value", "unit"])
        w.writerows(rows_out)

    def one(phase, scen, var, rows, metric):
        v = M.get((phase, scen, var, rows, metric))
        return med(v) if v else None

    # ---- request path ----
    clients = sorted({int(r["clients"]) for r in runs if r["phase"] == "request"})
    reps = max([int(r["repeat"]) for r in runs if r["phase"] == "request"] or [0])

    def rp(s, c, what="tps"):
        return med(samples[("request", s, "", str(c), "")][what])

    def rp_spread(s, c):
        return spread(samples[("request", s, "", str(c), "")]["tps"])

    md = []
    md.append(f"# apikey_usage benchmark — {os.path.basename(os.path.normpath(OUT))}")
    md.append("")
    md.append(f"Mode **{info.get('mode', '?')}**, commit `{info.get('commit', '?')}`, PostgreSQL "
              f"{info.get('version', '?')}, {info.get('cpus', '?')} CPUs (load average "
              f"{info.get('loadavg_start', '?')} at start, {info.get('loadavg_end', '?')} at end: the "
              f"machine is shared, repeats differ by 10–25 %), total {fmt(one('env', 'total', '', '', 'seconds'))} s. "
              "Cluster: fsync on, synchronous_commit on (off only where a scenario says so), shared_buffers 2GB, "
              "`pgbench -M prepared -n -c C -j min(C,2)`. Each figure is the **median** of the repeats, "
              "run interleaved (A B A B …); ratios are between medians. Throughput ratios: above 1× means "
              "more requests per second than the baseline. Absolute numbers are in `results.csv`; "
              "see `bench/README.md` for how to read this page.")
    md.append("")

    # ---- headline ----
    md.append("## Headline")
    md.append("")
    md.append("| measure | value |")
    md.append("|---|---|")
    for c in (2, 8):
        if c in clients:
            md.append(f"| check_request ÷ SELECT 1, {c} clients (hot key / 100 keys) | "
                      f"{fx(ratio(rp('check_hot', c), rp('select1', c)))} / {fx(ratio(rp('check_100', c), rp('select1', c)))} |")
    for c in (2, 8):
        if c in clients:
            md.append(f"| verify_key ÷ SELECT 1, {c} clients | {fx(ratio(rp('verify_hot', c), rp('select1', c)))} |")
    for c in (2, 8):
        if c in clients:
            md.append(f"| log_request ÷ SELECT 1, {c} clients | {fx(ratio(rp('log', c), rp('select1', c)))} |")
    for c in (2, 8):
        if c in clients:
            md.append(f"| log_request ÷ naive INSERT (sync commit on / off), {c} clients | "
                      f"{fx(ratio(rp('log', c), rp('naive_insert_sync', c)))} / "
                      f"{fx(ratio(rp('log', c), rp('naive_insert_async', c)))} |")
    for c in (2, 8):
        if c in clients:
            md.append(f"| check_request ÷ naive counter UPDATE, {c} clients (hot key / 100 keys) | "
                      f"{fx(ratio(rp('check_hot', c), rp('naive_limit_hot', c)))} / "
                      f"{fx(ratio(rp('check_100', c), rp('naive_limit_100', c)))} |")
    for c in (2, 8):
        if c in clients:
            md.append(f"| check_request + log_request ÷ naive verify + UPDATE + INSERT, {c} clients | "
                      f"{fx(ratio(rp('check_log_100', c), rp('naive_gateway_100', c)))} |")
    fl_n = [rows for (p, s, v, rows, m) in M if p == "flusher" and m == "seconds_until_flushed"]
    for rows in fl_n:
        secs = one("flusher", "log", "", rows, "seconds_until_flushed")
        md.append(f"| flusher: {rows_label(rows)} entries logged (2 clients) until all in the table | "
                  f"{fmt(ratio(float(rows), secs))} rows/s |")
    drain = M.get(("flusher", "drain", "", "8000", "rows_per_s"))
    if drain:
        md.append(f"| flusher: worker drain rate of a filled ring (8,000 entries, one flush()) | {fmt(med(drain))} rows/s |")
    data_rows = sorted({int(r["rows"]) for r in runs if r["phase"] == "dashboard"})

    def dl(d, v, n):
        return med(samples[("dashboard", d, v, "1", str(n))]["latency_ms"])

    for n in data_rows:
        sp = [ratio(dl(d, "naive", n), dl(d, "ours", n)) for d, _ in DASH]
        sp = [s for s in sp if s is not None]
        if sp:
            md.append(f"| dashboards, heavy key, {rows_label(n)} rows: speed-up over naive SQL (min – median – max of 7) | "
                      f"{fx(min(sp))} – {fx(statistics.median(sp))} – {fx(max(sp))} |")
    def pages_ratio(n):
        # ours: from the script that runs our page 1 and page 100 alone
        # (neither after the naive OFFSET query); older runs: the pairs
        r = ratio(dl("log_pages", "page100", n), dl("log_pages", "page1", n))
        return r if r is not None else ratio(dl("log_page100", "ours", n), dl("log_page1", "ours", n))

    for n in data_rows:
        md.append(f"| request_log page 100 ÷ page 1 latency, {rows_label(n)} rows (ours / naive OFFSET) | "
                  f"{fx(pages_ratio(n))} / "
                  f"{fx(ratio(dl('log_page100', 'naive', n), dl('log_page1', 'naive', n)))} |")
    live_rows = sorted({int(r["rows"]) for r in runs if r["phase"] == "live"})

    def ll(d, v, n):
        return med(samples[("live", d, v, "1", str(n))]["latency_ms"])

    for n in live_rows:
        sp = [ratio(ll(d, "naive", n), ll(d, "ours", n)) for d, _ in LIVE if d != "log_page1"]
        sp = [x for x in sp if x is not None]
        if sp:
            md.append(f"| live edge, one key, {rows_label(n)} requests in the last 40 minutes, default bounds: speed-up over naive "
                      f"(min – median – max of {len(sp)} calls) | {fx(min(sp))} – {fx(statistics.median(sp))} – {fx(max(sp))} |")
    if len(live_rows) >= 2:
        lo, hi = live_rows[0], live_rows[-1]
        fl = [ratio(ll(d, "ours", hi), ll(d, "ours", lo)) for d, _ in LIVE if d != "log_page1"]
        fl = [x for x in fl if x is not None]
        if fl:
            md.append(f"| live edge: our time at {rows_label(hi)} ÷ at {rows_label(lo)} (min – max over the calls) | "
                      f"{fx(min(fl))} – {fx(max(fl))} |")
    kcb = one("memory", "key_cache", "end", "", "bytes")
    kcc = one("memory", "key_cache", "end", "", "capacity")
    lbb = one("memory", "log_buffer", "end", "", "bytes")
    lbc = one("memory", "log_buffer", "end", "", "capacity")
    md.append(f"| shared memory per key (key_cache_bytes ÷ key_cache_capacity) | {fmt(ratio(kcb, kcc))} B |")
    md.append(f"| log buffer per entry (buffer_bytes ÷ buffer_capacity) | {fmt(ratio(lbb, lbc))} B |")
    for label in ("after_flusher", "end"):
        rss = one("memory", "worker_rss", label, "", "VmRSS")
        anon = one("memory", "worker_rss", label, "", "RssAnon")
        if rss is not None:
            md.append(f"| background worker resident memory ({label.replace('_', ' ')}): VmRSS (of which private RssAnon) | "
                      f"{fbytes(rss)} ({fbytes(anon)}) |")
    skipped = [(rows, one("dataset", "skipped", "", rows, "needed_seconds"), one("dataset", "skipped", "", rows, "seconds_left"))
               for (p, s, v, rows, m) in M if p == "dataset" and s == "skipped" and m == "needed_seconds"]
    md.append("")
    for rows, need, left in skipped:
        md.append(f"**Note:** the {rows_label(rows)}-row dataset step was skipped: at the load rate measured here it "
                  f"needed about {fmt(need)} s and {fmt(left)} s of the time budget were left; the largest dataset "
                  f"measured is {rows_label(max(data_rows)) if data_rows else 'none'} rows.")
        md.append("")

    # ---- request path detail ----
    md.append("## Request path: throughput by clients")
    md.append("")
    md.append(f"Median transactions per second of {reps} interleaved runs per cell; spread = half the min–max range "
              "relative to the median. “÷ SELECT 1” is the share of the floor's throughput; “÷ naive” compares with the "
              "naive SQL partner named in the next column (throughput ratio, above 1× = ours faster). "
              "`check_log_100` and `naive_gateway_100` count API requests (2 resp. 3 statements each). "
              "Plots: `throughput.png`.")
    md.append("")
    for c in clients:
        md.append(f"### {c} client{'s' if c > 1 else ''}")
        md.append("")
        md.append("| scenario | what | median TPS | spread | ÷ SELECT 1 | ÷ naive | naive partner |")
        md.append("|---|---|--:|--:|--:|--:|---|")
        for s, what, partner in REQUEST:
            m = rp(s, c)
            md.append(f"| `{s}` | {what} | {fmt(m)} | {fpct(rp_spread(s, c))} | {fx(ratio(m, rp('select1', c)))} | "
                      f"{fx(ratio(m, rp(partner, c))) if partner else ''} | {('`' + partner + '`') if partner else ''} |")
        md.append(f"| `log` | log_request ÷ naive INSERT with synchronous_commit off | | | | "
                  f"{fx(ratio(rp('log', c), rp('naive_insert_async', c)))} | `naive_insert_async` |")
        md.append("")

    # ---- a served request through a real driver ----
    drv_clients = sorted({int(m["clients"]) for m in metrics if m["phase"] == "driver" and m["clients"]})
    if drv_clients:
        md.append("## A served request through a real driver")
        md.append("")
        md.append("`bench/driver.js`: Node with node-postgres, one connection per client, bind parameters (as "
                  "`examples/gateway` does). Per served request: `pair` = `check_request` then `log_request`; "
                  "`noop_pair` = two no-op statements of the same shape (same parameters and result columns); "
                  "`batched` = `check_request`, and one `log_requests` per 50 requests of a client. Medians of the "
                  "interleaved runs; µs per served request = 1 / throughput.")
        md.append("")
        md.append("| clients | scenario | served/s | µs per served request | p50 latency µs | ÷ noop_pair (cost) |")
        md.append("|--:|---|--:|--:|--:|--:|")
        for c in drv_clients:
            base = one("driver", "noop_pair", f"c{c}", "", "us_per_served")
            for scen in ("noop_pair", "pair", "batched"):
                us = one("driver", scen, f"c{c}", "", "us_per_served")
                md.append(f"| {c} | `{scen}` | {fmt(one('driver', scen, f'c{c}', '', 'served_per_s'))} | {fmt(us, 1)} | "
                          f"{fmt(one('driver', scen, f'c{c}', '', 'p50_us'))} | {fx(ratio(us, base))} |")
        md.append("")

    # ---- flusher ----
    md.append("## Flusher")
    md.append("")
    md.append("log_request from 2 pgbench clients (100 keys, 40 endpoints), then flush(): rows/s counts from the start of "
              "logging until flush() returned with every row in `request_log_raw` (and its rollup in `usage_hourly`).")
    md.append("")
    md.append("| entries | rows/s until flushed | logging rate (rows/s) | drain after logging ended | rows in table | overflowed to caller (sync_fallbacks) |")
    md.append("|--:|--:|--:|--:|--:|--:|")
    for rows in fl_n:
        secs = one("flusher", "log", "", rows, "seconds_until_flushed")
        lg = one("flusher", "log", "", rows, "seconds_logging")
        dr = one("flusher", "log", "", rows, "seconds_drain_after_logging")
        md.append(f"| {fmt(float(rows))} | {fmt(ratio(float(rows), secs))} | {fmt(ratio(float(rows), lg))} | "
                  f"{fmt(dr, 2)} s | {fmt(one('flusher', 'log', '', rows, 'rows_in_table'))} | "
                  f"{fmt(one('flusher', 'log', '', rows, 'sync_fallbacks'))} |")
    drain = M.get(("flusher", "drain", "", "8000", "rows_per_s"))
    if drain:
        got = med(M.get(("flusher", "drain", "", "8000", "rows_flushed")))
        md.append("")
        md.append(f"The worker's own drain rate (flush_interval raised to 60 s, 8,000 entries logged into the ring, then "
                  f"one flush() that wakes the worker and waits): median {fmt(med(drain))} rows/s over {len(drain)} runs "
                  f"(flush() wrote a median {fmt(got)} entries; fewer than 8,000 means the worker had woken earlier).")
    md.append("")

    # ---- dashboards ----
    md.append("## Dashboards: the heavy key over 30 days")
    md.append("")
    md.append("One client; every pgbench transaction runs our call and then the naive query (A B A B … in one backend), latencies per statement (`pgbench -r`), median over the repeats. Ours: the analytics functions "
              "(hourly rollups + raw edges, keyset pages). Naive: GROUP BY / ORDER BY … OFFSET over a plain table with "
              "the same rows and a btree on (api_key_id, requested_at). Speed-up = naive ÷ ours latency. "
              "Page 100: ours walks 99 pages with the keyset cursor first and times the 100th; naive uses OFFSET 4950 LIMIT 50. "
              "Plot: `dashboards.png`.")
    md.append("")
    for n in data_rows:
        heavy = n // 5
        md.append(f"### {rows_label(n)} rows ({rows_label(heavy)} of the heavy key)")
        md.append("")
        md.append("| dashboard | ours (ms) | naive (ms) | speed-up |")
        md.append("|---|--:|--:|--:|")
        for d, name in DASH:
            o, v = dl(d, "ours", n), dl(d, "naive", n)
            md.append(f"| {name} | {fmt(o, 2)} | {fmt(v, 2)} | {fx(ratio(v, o))} |")
        md.append(f"| page 100 ÷ page 1 (ours: own script, below) | {fx(pages_ratio(n))} | "
                  f"{fx(ratio(dl('log_page100', 'naive', n), dl('log_page1', 'naive', n)))} | |")
        walk = one("dashboard", "walk_99_pages", "ours", str(n), "ms")
        md.append("")
        checks = [f"{what.replace('_', ' ')}: {'yes' if info.get(('check', what, str(n))) == 't' else 'NO'}"
                  for what in ("summary_matches", "page100_matches") if ("check", what, str(n)) in info]
        md.append(f"Walking the first 99 pages took {fmt(walk, 0)} ms in all ({fmt(ratio(walk, 99), 2)} ms a page). "
                  f"Ours agrees with the naive SQL ({'; '.join(checks)}).")
        p1, p100 = dl("log_pages", "page1", n), dl("log_pages", "page100", n)
        if p1 is not None and p100 is not None:
            md.append("")
            md.append(f"Our page 100 ÷ page 1 comes from a script of its own that runs our page 1 and then our "
                      f"page 100 in every transaction ({fmt(p1, 2)} ms / {fmt(p100, 2)} ms): in the pairs above "
                      f"our page 100 follows the naive OFFSET query of the previous transaction, which leaves it a "
                      f"cold CPU cache, and our page 1 follows a cheap one.")
        md.append("")

    # ---- live edge ----
    if live_rows:
        md.append("## Live edge: one key, requests in the last 40 minutes")
        md.append("")
        md.append("The rows are loaded straight into the raw log and, in the same statement, into the rollups through "
                  "`_rollup_apply` (as the log writer does), spread over the 40 minutes before the load; the same rows "
                  "in a plain table with a btree on (api_key_id, requested_at) for the naive SQL. Every call uses the "
                  "dashboard's default bounds `[now() - 30 days, now())` (so the upper bound falls inside the current "
                  "hour), plus the last hour in 1-minute buckets. One client, ours then naive in every transaction, "
                  "median latency over the repeats.")
        md.append("")
        md.append("| call | " + " | ".join(f"ours {rows_label(n)} (ms) | naive {rows_label(n)} (ms) | speed-up {rows_label(n)}"
                                            for n in live_rows) + (" | ours " + rows_label(live_rows[-1]) + " ÷ " + rows_label(live_rows[0]) if len(live_rows) > 1 else "") + " |")
        md.append("|---|" + "--:|--:|--:|" * len(live_rows) + ("--:|" if len(live_rows) > 1 else ""))
        for d, name in LIVE:
            cells = []
            for n in live_rows:
                o, v = ll(d, "ours", n), ll(d, "naive", n)
                cells += [fmt(o, 2), fmt(v, 2), fx(ratio(v, o))]
            if len(live_rows) > 1:
                cells.append(fx(ratio(ll(d, "ours", live_rows[-1]), ll(d, "ours", live_rows[0]))))
            md.append(f"| {name} | " + " | ".join(cells) + " |")
        md.append("")
        for n in live_rows:
            checks = [f"{what.replace('_', ' ')}: {'yes' if info.get(('check', what, str(n))) == 't' else 'NO'}"
                      for what in ("live_summary_matches", "live_minutes_match") if ("check", what, str(n)) in info]
            secs = one("live", "load", "total", str(n), "seconds")
            md.append(f"{rows_label(n)}: loaded in {fmt(secs, 1)} s; ours agrees with the naive SQL ({'; '.join(checks)}).")
        md.append("")

    # ---- sizes ----
    md.append("## Dataset: sizes and load")
    md.append("")
    md.append("Sizes of the dashboard dataset (1,000 keys over 30 days, heavy key 20 % of the rows). "
              "“Raw data” is the rows as text (about a CSV export); ratios are to the raw data size.")
    md.append("")
    size_rows = sorted({int(rows) for (p, s_, v, rows, m) in M if p == "dataset" and s_ == "size"})
    objects = []
    for (p, s_, v, rows, m) in M:
        if p == "dataset" and s_ == "size" and m == "table_bytes" and v not in ("raw_text", "naive_log") and v not in objects:
            objects.append(v)
    objects.sort(key=lambda o: -(one("dataset", "size", o, str(size_rows[-1]), "table_bytes") or 0) if size_rows else 0)
    md.append("| rows | object | table | indexes | rows in it | (table + indexes) ÷ raw data |")
    md.append("|--:|---|--:|--:|--:|--:|")
    for n in size_rows:
        r = str(n)
        raw = one("dataset", "size", "raw_text", r, "table_bytes")
        md.append(f"| {rows_label(n)} | raw data (rows as text) | {fbytes(raw)} | | {fmt(float(n))} | 1× |")
        total = 0
        for o in objects:
            t, i = one("dataset", "size", o, r, "table_bytes"), one("dataset", "size", o, r, "index_bytes")
            if t is None:
                continue
            total += (t or 0) + (i or 0)
            if (t or 0) + (i or 0) < 1 << 20:
                continue        # bookkeeping tables (flush_state, ...): in the total only
            md.append(f"| | `apikey_usage.{o}` | {fbytes(t)} | {fbytes(i)} | {fmt(one('dataset', 'size', o, r, 'rows'))} | "
                      f"{fx(ratio((t or 0) + (i or 0), raw))} |")
        md.append(f"| | **ours, all tables** | | | | **{fx(ratio(total, raw))}** |")
        t, i = one("dataset", "size", "naive_log", r, "table_bytes"), one("dataset", "size", "naive_log", r, "index_bytes")
        md.append(f"| | naive table + btree | {fbytes(t)} | {fbytes(i)} | {fmt(one('dataset', 'size', 'naive_log', r, 'rows'))} | "
                  f"**{fx(ratio((t or 0) + (i or 0), raw))}** |")
    md.append("")
    md.append("| rows | staging (generate_series) rows/s | import_requests rows/s | naive INSERT … SELECT rows/s | whole step rows/s | heavy key rollup rows |")
    md.append("|--:|--:|--:|--:|--:|--:|")
    for n in size_rows:
        r = str(n)
        md.append(f"| {rows_label(n)} | {fmt(one('dataset', 'load', 'stage', r, 'rows_per_s'))} | "
                  f"{fmt(one('dataset', 'load', 'import_requests', r, 'rows_per_s'))} | "
                  f"{fmt(one('dataset', 'load', 'naive_insert', r, 'rows_per_s'))} | "
                  f"{fmt(one('dataset', 'load', 'total', r, 'rows_per_s'))} | "
                  f"{fmt(one('dataset', 'size', 'heavy_rollup_rows', r, 'rows'))} |")
    md.append("")
    md.append("(The rates are those of the step that grew the dataset to that size, VACUUM ANALYZE included in the whole step.)")
    md.append("")

    # ---- keys ----
    md.append("## verify_key against the number of keys")
    md.append("")
    md.append("2 clients pick one of N keys at random per transaction. Every variant first reads the key string from a "
              "table of N keys (`floor` does only that), so ratios are against that floor, not SELECT 1. "
              "Cold: the first verify of each new key (cache miss, read from `api_keys`), set-based in one backend.")
    md.append("")
    md.append("| keys | floor TPS | verify_key TPS | ÷ floor | naive TPS | ÷ floor | verify_key ÷ naive | cold verifies/s |")
    md.append("|--:|--:|--:|--:|--:|--:|--:|--:|")
    levels = sorted({int(r["rows"]) for r in runs if r["phase"] == "keys"})
    kc = sorted({int(r["clients"]) for r in runs if r["phase"] == "keys"})
    for n in levels:
        for c in kc:
            def kv(v):
                return med(samples[("keys", "verify", v, str(c), str(n))]["tps"])
            f_, o_, n_ = kv("floor"), kv("ours"), kv("naive")
            md.append(f"| {fmt(float(n))} | {fmt(f_)} | {fmt(o_)} | {fx(ratio(o_, f_))} | {fmt(n_)} | {fx(ratio(n_, f_))} | "
                      f"{fx(ratio(o_, n_))} | {fmt(one('keys', 'cold_verify', '', str(n), 'keys_per_s'))} |")
    md.append("")
    loads = [(v, rows) for (p, s, v, rows, m) in M if p == "keys" and s == "load"]
    for v, rows in loads:
        md.append(f"- key creation, {v} ({fmt(float(rows))} keys): {fmt(one('keys', 'load', v, rows, 'keys_per_s'))} keys/s")
    md.append("")

    # ---- memory ----
    md.append("## Memory")
    md.append("")
    md.append("| snapshot | key cache (bytes / capacity / keys cached) | log buffer (bytes / entries) | worker VmRSS | RssAnon | RssShmem | RssFile |")
    md.append("|---|--:|--:|--:|--:|--:|--:|")
    for label in ("after_flusher", "after_keys", "end"):
        g = lambda s, m: one("memory", s, label, "", m)  # noqa: E731
        if g("key_cache", "bytes") is None:
            continue
        md.append(f"| {label.replace('_', ' ')} | {fbytes(g('key_cache', 'bytes'))} / {fmt(g('key_cache', 'capacity'))} / "
                  f"{fmt(g('key_cache', 'size'))} | {fbytes(g('log_buffer', 'bytes'))} / {fmt(g('log_buffer', 'capacity'))} | "
                  f"{fbytes(g('worker_rss', 'VmRSS'))} | {fbytes(g('worker_rss', 'RssAnon'))} | "
                  f"{fbytes(g('worker_rss', 'RssShmem'))} | {fbytes(g('worker_rss', 'RssFile'))} |")
    md.append("")
    md.append("VmRSS counts the shared memory pages (shared_buffers, key cache) the worker has touched (RssShmem) and the "
              "mapped log-buffer file (RssFile); RssAnon is its private memory.")
    md.append("")

    # ---- phase times, failures ----
    md.append("## Run")
    md.append("")
    for p in ("request", "flusher", "keys", "dashboard", "live"):
        s = one(p, "phase", "", "", "seconds")
        if s is not None:
            md.append(f"- {p} phase: {fmt(s)} s")
    md.append(f"- total: {fmt(one('env', 'total', '', '', 'seconds'))} s")
    md.append("")
    if failures:
        md.append("## Failed runs")
        md.append("")
        md.append("These pgbench runs aborted or printed errors and are left out of the medians:")
        md.append("")
        for r, err in failures:
            md.append(f"- `{r['phase']}/{r['scenario']}{'/' + r['variant'] if r['variant'] else ''}` clients {r['clients']} "
                      f"repeat {r['repeat']}: {err} (`{r['file']}`)")
        md.append("")

    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write("\n".join(md))

    # ---- plot data ----
    os.makedirs(PLOT, exist_ok=True)
    for group, names in PLOT_GROUPS:
        with open(os.path.join(PLOT, f"throughput_{group}.dat"), "w") as f:
            f.write("clients " + " ".join(names) + "\n")
            for c in clients:
                vals = [rp(s, c) for s in names]
                f.write(f"{c} " + " ".join("NaN" if v is None else f"{v:.1f}" for v in vals) + "\n")
    for d, _ in DASH:
        with open(os.path.join(PLOT, f"dash_{d}.dat"), "w") as f:
            f.write("rows ours naive\n")
            for n in data_rows:
                o, v = dl(d, "ours", n), dl(d, "naive", n)
                f.write(f"{n} {'NaN' if o is None else f'{o:.3f}'} {'NaN' if v is None else f'{v:.3f}'}\n")
    print(f"report: {os.path.join(OUT, 'summary.md')}")


if __name__ == "__main__":
    main()
