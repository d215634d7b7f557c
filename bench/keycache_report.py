#!/usr/bin/env python3
"""Summary of bench/keycache.sh: medians over repeats, ratios to the naive
lookup, and the goals of the key-cache work checked against them.

usage: keycache_report.py keycache.csv KEYS SMALL_LEVEL SECONDS MODE
"""
import csv
import statistics
import sys
from collections import defaultdict

path, nkeys, small, seconds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
runs = defaultdict(list)
cpu = {}
inproc = defaultdict(list)
for row in csv.DictReader(open(path)):
    if row["traffic"] == "idle":
        cpu[int(row["max_keys"])] = float(row["tps"])
        continue
    if row["traffic"] == "inproc":
        inproc[(int(row["max_keys"]), row["variant"])].append(float(row["tps"]))
        continue
    runs[(int(row["max_keys"]), row["traffic"], int(row["clients"]), row["variant"])].append(row)


def med(key, field):
    vals = [float(r[field]) for r in runs.get(key, []) if r.get(field) not in ("", None)]
    return statistics.median(vals) if vals else None


def fmt(x, spec="{:,.0f}"):
    return "" if x is None else spec.format(x)


def ratio(a, b):
    return None if a is None or not b else a / b


levels = sorted({k[0] for k in runs})
out = []
out.append("## Key cache at scale (`bench/keycache.sh`, %s mode)\n" % mode)
out.append("%d keys (each with a rate limit, so `check_request` runs the limiter step), "
           "pgbench -M prepared, %s s per run, medians of the repeats, interleaved. "
           "floor = the key selection alone (every script pays it); check = `SELECT * FROM check_request(key, 'GET', '/bench')`, "
           "verify = `SELECT * FROM verify_key(key)`, naive = `SELECT key_id, workspace FROM naive_keys WHERE key_hash = sha256(convert_to(key, 'UTF8'))` "
           "(unique btree on a plain table of the hashes), the key passed as a parameter (the selection as a scalar subquery). "
           "Latencies are whole transactions from pgbench's per-transaction log.\n" % (nkeys, seconds))
out.append("| max_keys | traffic | clients | floor TPS | check TPS | naive TPS | verify TPS | check ÷ naive | verify ÷ naive | hit ratio | p99 check / naive (ms) | p99.9 check / naive (ms) |")
out.append("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
results = {}
for level in levels:
    for traffic in ("hot", "uniform"):
        for clients in (2, 8):
            k = lambda v: (level, traffic, clients, v)
            if not runs.get(k("check")):
                continue
            r = dict(
                floor=med(k("floor"), "tps"), check=med(k("check"), "tps"),
                naive=med(k("naive"), "tps"), verify=med(k("verify"), "tps"),
                hit=med(k("check"), "hit_ratio"),
                p99c=med(k("check"), "p99_ms"), p99n=med(k("naive"), "p99_ms"),
                p999c=med(k("check"), "p999_ms"), p999n=med(k("naive"), "p999_ms"))
            r["cn"] = ratio(r["check"], r["naive"])
            r["vn"] = ratio(r["verify"], r["naive"])
            results[(level, traffic, clients)] = r
            out.append("| {:,} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |".format(
                level, "1,000 hot keys" if traffic == "hot" else "uniform over all", clients,
                fmt(r["floor"]), fmt(r["check"]), fmt(r["naive"]), fmt(r["verify"]),
                fmt(r["cn"], "{:.2f}×"), fmt(r["vn"], "{:.2f}×"), fmt(r["hit"], "{:.0%}"),
                fmt(r["p99c"], "{:.2f}"), fmt(r["p99n"], "{:.2f}"),
                fmt(r["p999c"], "{:.2f}"), fmt(r["p999n"], "{:.2f}")))
out.append("")
if any(med((lvl, tr, cl, "check"), "server_us_per_tx") is not None for (lvl, tr, cl) in results):
    out.append("Server CPU per transaction (µs: the CPU time of the run's backends between two reads of "
               "/proc in the middle of the run ÷ the transactions that ended in between; medians of the "
               "repeats; connection start and exit left out, as with pooled connections). Other load on the "
               "machine moves it much less than TPS on 2 vCPUs shared with the clients; "
               "\"over floor\" is what each statement adds to the key selection alone:\n")
    out.append("| max_keys | traffic | clients | floor | check | naive | verify | over floor: check / naive / verify | naive ÷ check | naive ÷ verify |")
    out.append("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for (level, traffic, clients), r in sorted(results.items()):
        k = lambda v: (level, traffic, clients, v)
        c = {v: med(k(v), "server_us_per_tx") for v in ("floor", "check", "naive", "verify")}
        r["cpu"] = c
        over = lambda v: None if c[v] is None or c["floor"] is None else c[v] - c["floor"]
        out.append("| {:,} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} |".format(
            level, "1,000 hot keys" if traffic == "hot" else "uniform over all", clients,
            fmt(c["floor"], "{:.2f}"), fmt(c["check"], "{:.2f}"), fmt(c["naive"], "{:.2f}"),
            fmt(c["verify"], "{:.2f}"), fmt(over("check"), "{:.2f}"), fmt(over("naive"), "{:.2f}"),
            fmt(over("verify"), "{:.2f}"), fmt(ratio(c["naive"], c["check"]), "{:.2f}×"),
            fmt(ratio(c["naive"], c["verify"]), "{:.2f}×")))
    out.append("")
narrow = [(lvl, tr, cl) for (lvl, tr, cl) in sorted(results) if runs.get((lvl, tr, cl, "check2"))]
if narrow:
    out.append("The width of the answer: `check_request` answers 11 columns, `verify_key` 4, the naive lookup 2. "
               "PostgreSQL pays for every result column of every statement (a type lookup for the plan's result "
               "descriptor, one for the RowDescription message, one for the output function, then the output "
               "function itself), and so does the client that reads them. check2 / verify2 are the same calls "
               "reading two columns (`SELECT allowed, key_id FROM check_request(...)`, `SELECT valid, key_id FROM "
               "verify_key(...)`), run in the same rounds:\n")
    out.append("| max_keys | traffic | clients | check ÷ naive (11 columns) | check2 ÷ naive (2 columns) | verify ÷ naive (4 columns) | verify2 ÷ naive (2 columns) | server µs per tx: check / check2 / verify / verify2 / naive |")
    out.append("|--:|---|--:|--:|--:|--:|--:|--:|")
    for (level, traffic, clients) in narrow:
        k = lambda v: (level, traffic, clients, v)
        t = {v: med(k(v), "tps") for v in ("check", "check2", "verify", "verify2", "naive")}
        c = {v: med(k(v), "server_us_per_tx") for v in t}
        results[(level, traffic, clients)]["c2n"] = ratio(t["check2"], t["naive"])
        results[(level, traffic, clients)]["v2n"] = ratio(t["verify2"], t["naive"])
        out.append("| {:,} | {} | {} | {} | {} | {} | {} | {} |".format(
            level, "1,000 hot keys" if traffic == "hot" else "uniform over all", clients,
            fmt(ratio(t["check"], t["naive"]), "{:.2f}×"), fmt(ratio(t["check2"], t["naive"]), "{:.2f}×"),
            fmt(ratio(t["verify"], t["naive"]), "{:.2f}×"), fmt(ratio(t["verify2"], t["naive"]), "{:.2f}×"),
            " / ".join(fmt(c[v], "{:.2f}") for v in ("check", "check2", "verify", "verify2", "naive"))))
    out.append("")
if inproc:
    out.append("CPU time per lookup inside one backend (µs, median of 3 rounds over the same sample of "
               "keys drawn uniformly from the population; set-based, so without the per-statement cost "
               "of the TPS runs; robust to other load on the machine). naive = a nested loop of index "
               "probes; floor = reading the sample:\n")
    out.append("| max_keys | verify_key | check_request | naive | floor | naive ÷ verify | naive ÷ check |")
    out.append("|--:|--:|--:|--:|--:|--:|--:|")
    for level in sorted({k[0] for k in inproc}):
        m = {v: statistics.median(inproc[(level, v)]) if inproc.get((level, v)) else None
             for v in ("verify", "check", "naive", "floor")}
        out.append("| {:,} | {} | {} | {} | {} | {} | {} |".format(
            level, fmt(m["verify"], "{:.2f}"), fmt(m["check"], "{:.2f}"), fmt(m["naive"], "{:.2f}"),
            fmt(m["floor"], "{:.2f}"), fmt(ratio(m["naive"], m["verify"]), "{:.2f}×"),
            fmt(ratio(m["naive"], m["check"]), "{:.2f}×")))
    out.append("")
if cpu:
    out.append("Worker CPU over 10 s without traffic, cache as left by the runs: " +
               ", ".join("max_keys {:,}: {:.2f} s".format(l, cpu[l]) for l in sorted(cpu)) + "\n")

goals = []


def goal(text, ok):
    goals.append("| %s | %s |" % (text, "n/a" if ok is None else ("met" if ok else "**not met**")))


lo, hi = min(levels), max(levels)
u_lo, u_hi = results.get((lo, "uniform", 2)), results.get((hi, "uniform", 2))
def narrow_note(r):
    if r.get("c2n") is None:
        return ""
    return " (reading two columns, as the naive lookup does: check2 %.2f×, verify2 %.2f×; not counted)" % (
        r["c2n"], r["v2n"] or 0)


if u_lo:
    goal("uniform, max_keys %s: check ÷ naive ≥ 1.0 (%.2f×), p99 within 2× of naive's (%.2f / %.2f ms)%s"
         % (f"{lo:,}", u_lo["cn"] or 0, u_lo["p99c"] or 0, u_lo["p99n"] or 0, narrow_note(u_lo)),
         (u_lo["cn"] or 0) >= 1.0 and (u_lo["p99c"] or 0) <= 2 * (u_lo["p99n"] or 0))
if u_hi and hi >= nkeys:
    goal("every key cached: check ÷ naive ≥ 1.2 (%.2f×), verify ÷ naive ≥ 1.3 (%.2f×)%s"
         % (u_hi["cn"] or 0, u_hi["vn"] or 0, narrow_note(u_hi)),
         (u_hi["cn"] or 0) >= 1.2 and (u_hi["vn"] or 0) >= 1.3)
s2, s8 = results.get((small, "uniform", 2)), results.get((small, "uniform", 8))
if s2 and s8 and s2["cn"] and s8["cn"]:
    goal("8 clients, cache 10× too small: check ÷ naive within 20 %% of the 2-client ratio (%.2f× vs %.2f×)"
         % (s8["cn"], s2["cn"]), abs(s8["cn"] - s2["cn"]) <= 0.2 * s2["cn"])
p999_ok = True
mono_ok = True
prev = None
for level in levels:
    r = results.get((level, "uniform", 2))
    if not r:
        continue
    if r["p999c"] is not None and r["p999n"]:
        p999_ok &= r["p999c"] <= 3 * r["p999n"]
    if prev is not None and r["check"] is not None and prev["check"] is not None:
        # "never slower": allow the machine's run-to-run noise (10 %)
        mono_ok &= r["check"] >= 0.9 * prev["check"]
    prev = r
goal("every max_keys, uniform: p99.9 of check within 3× of naive's", p999_ok)
goal("a larger cache never slower than a smaller one (uniform check TPS, 10 % noise allowed)", mono_ok)
if lo in cpu and hi in cpu:
    goal("worker CPU idle with max_keys %s within 2× of %s (%.2f s vs %.2f s per 10 s)"
         % (f"{hi:,}", f"{lo:,}", cpu[hi], cpu[lo]), cpu[hi] <= 2 * max(cpu[lo], 0.05))
out.append("| goal | |")
out.append("|---|---|")
out.extend(goals)
print("\n".join(out))
