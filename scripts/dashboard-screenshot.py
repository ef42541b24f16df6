#!/usr/bin/env python3
"""Render the dashboard's panels from a real run, for the README (docs/dashboard.png).

Runs the bridge (`run --health`) against a real broker and the project's registry, feeds it
verzoeken with `send` (a few without a submission id, which become dead letters) for a while,
scrapes /metrics every second, draws the panels of dashboards/gzac-portal-bridge.json from the
scrapes as SVG in an HTML page, and has headless Chromium photograph it. Grafana is not installable
here; the page computes the same expressions (rates of counters, histogram quantiles) itself.

  scripts/dashboard-screenshot.py BOOTSTRAP    e.g. 127.0.0.1:19092 (a broker from scripts/kafka.sh)
"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request, uuid

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(root, "target", "debug", "gzac-portal-bridge")
bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092"
run = uuid.uuid4().hex[:8]
env = dict(os.environ, GZAC_BRIDGE_BOOTSTRAP_SERVERS=bootstrap, GZAC_BRIDGE_TOPIC_PREFIX=f"shot-{run}.",
           GZAC_BRIDGE_GROUP_ID=f"shot-{run}", GZAC_BRIDGE_REGISTRY_URL="http://127.0.0.1:18581",
           RUST_LOG="warn")
procs = []


def start(*args):
    p = subprocess.Popen([binary, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def verzoek(i, bad=False):
    sid = "" if bad else str(uuid.uuid5(uuid.NAMESPACE_OID, f"{run}-{i}"))
    value = {"submission_id": sid, "type": "parkeervergunning", "bsn": "569312863", "kvk": None, "rol": None,
             "data": json.dumps({"kenteken": "AB-123-C"}), "pdf_url": None, "csv_url": None, "attachments": [],
             "language_code": "nl", "payment": None, "submitted_at": int(time.time() * 1000)}
    return json.dumps({"key": sid or f"bad-{i}", "value": value})


def scrape():
    text = urllib.request.urlopen("http://127.0.0.1:18582/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r'^([a-z_]+)\{([^}]*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return samples


def series(scrapes, name, key, value=lambda v: v):
    """Per label key: [(t, v)] of a sample over the scrapes."""
    out = {}
    for t, s in scrapes:
        for labels, v in s.get(name, []):
            out.setdefault(key(labels), []).append((t, value(v)))
    return out


def rate(points):
    return [(t1, max(0.0, (v1 - v0) / (t1 - t0))) for (t0, v0), (t1, v1) in zip(points, points[1:]) if t1 > t0]


def quantile(scrapes, name, q, component):
    """histogram_quantile(q, rate(<name>_bucket[5 s])) over time."""
    out, window = [], 5
    for i in range(window, len(scrapes)):
        (t0, s0), (t1, s1) = scrapes[i - window], scrapes[i]
        b0 = {l["le"]: v for l, v in s0.get(name + "_bucket", []) if l.get("component") == component}
        b1 = [(l["le"], v) for l, v in s1.get(name + "_bucket", []) if l.get("component") == component]
        inc = sorted(((float("inf") if le == "+Inf" else float(le)), v - b0.get(le, 0)) for le, v in b1)
        if not inc or inc[-1][1] <= 0:
            continue
        want = q * inc[-1][1]
        prev_le, prev = 0.0, 0.0
        for le, c in inc:
            if c >= want:
                x = le if le != float("inf") else prev_le
                if c > prev and le != float("inf"):
                    x = prev_le + (le - prev_le) * (want - prev) / (c - prev)
                out.append((t1, x))
                break
            prev_le, prev = le, c
    return out


def svg(title, lines, unit):
    w, h, pad = 640, 220, 40
    pts = [p for _, ps in lines for p in ps]
    if not pts:
        return f'<div class="panel"><h3>{title}</h3><p class="none">no data</p></div>'
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    vmax = max(max(p[1] for p in pts), 1e-9) * 1.1
    colours = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ca95e5"]
    body, legend = [], []
    for i, (name, ps) in enumerate(lines):
        if not ps:
            continue
        c = colours[i % len(colours)]
        coords = " ".join(f"{pad + (t - t0) / max(t1 - t0, 1) * (w - 2 * pad):.1f},{h - pad - v / vmax * (h - 2 * pad):.1f}" for t, v in ps)
        body.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{coords}"/>')
        legend.append(f'<span style="color:{c}">&#9632; {name}</span>')
    fmt = (lambda v: f"{v * 1000:.0f} ms") if unit == "s" else (lambda v: f"{v:.0f}")
    grid = "".join(f'<line x1="{pad}" x2="{w - pad}" y1="{h - pad - f * (h - 2 * pad)}" y2="{h - pad - f * (h - 2 * pad)}" stroke="#333"/>'
                   f'<text x="4" y="{h - pad - f * (h - 2 * pad) + 4}">{fmt(vmax * f)}</text>' for f in (0, 0.5, 1))
    return (f'<div class="panel"><h3>{title}</h3><svg width="{w}" height="{h}">{grid}{"".join(body)}'
            f'<text x="{pad}" y="{h - 10}">{int(t1 - t0)} s</text></svg><div class="legend">{" ".join(legend)}</div></div>')


def main():
    out_png = os.path.join(root, "docs", "dashboard.png")
    os.makedirs(os.path.dirname(out_png), exist_ok=True)
    try:
        start("registry", "--listen", "127.0.0.1:18581")
        time.sleep(1)
        subprocess.run([binary, "topics", "apply", "--replication-factor", "1"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([binary, "schemas", "register"], env=env, check=True, stdout=subprocess.DEVNULL)
        start("run", "--health", "127.0.0.1:18582")
        scrapes, sent, began = [], 0, time.time()
        while time.time() - began < 45:
            batch = "\n".join(verzoek(sent + i, bad=(sent + i) % 97 == 0) for i in range(400)) + "\n"
            if time.time() - began < 35:
                subprocess.run([binary, "send", "portaal.verzoeken.v1"], env=env, input=batch.encode(), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                sent += 400
            try:
                scrapes.append((time.time() - began, scrape()))
            except OSError:
                pass
            time.sleep(1)
    finally:
        for p in procs:
            p.terminate()
    comp = lambda l: l.get("component", "")
    routes = ["verzoek"]
    panels = [
        svg("Records in / out per second (verzoek)", [(f"{k} in", rate(v)) for k, v in series(scrapes, "gzac_bridge_records_total", comp).items() if k in routes]
            + [(f"{k} out", rate(v)) for k, v in series(scrapes, "gzac_bridge_output_records_total", comp).items() if k in routes], "n"),
        svg("Consumer lag per partition (records)", [(f"p{k}", v) for k, v in series(scrapes, "gzac_bridge_partition_lag_records", lambda l: l.get("partition") if comp(l) == "verzoek" else None).items() if k], "n"),
        svg("End-to-end latency, input timestamp to commit", [("p99", quantile(scrapes, "gzac_bridge_end_to_end_latency_seconds", 0.99, "verzoek")),
                                                               ("p50", quantile(scrapes, "gzac_bridge_end_to_end_latency_seconds", 0.5, "verzoek"))], "s"),
        svg("Transaction commit time", [("p99", quantile(scrapes, "gzac_bridge_transaction_commit_seconds", 0.99, "verzoek")),
                                        ("p50", quantile(scrapes, "gzac_bridge_transaction_commit_seconds", 0.5, "verzoek"))], "s"),
        svg("Dead letters (cumulative), by class", [(k, v) for k, v in series(scrapes, "gzac_bridge_dead_letters_total", lambda l: l.get("class") if comp(l) == "verzoek" else None).items() if k], "n"),
        svg("Transactions per second", [("committed", rate(series(scrapes, "gzac_bridge_transactions_committed_total", comp).get("verzoek", []))),
                                        ("aborted", rate(series(scrapes, "gzac_bridge_transactions_aborted_total", comp).get("verzoek", [])))], "n"),
    ]
    html = ("<html><head><style>body{background:#111217;color:#ccc;font:13px sans-serif;margin:12px}"
            ".grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}.panel{background:#181b1f;border:1px solid #2c3235;padding:8px}"
            "h1{font-size:18px}h3{margin:0 0 6px;font-size:14px;color:#eee}svg text{fill:#999;font-size:11px}.legend span{margin-right:12px}"
            f"</style></head><body><h1>gzac-portal-bridge — {sent} verzoeken through a real broker, scraped every second</h1>"
            f"<div class='grid'>{''.join(panels)}</div></body></html>")
    page = os.path.join(tempfile.mkdtemp(), "dashboard.html")
    open(page, "w").write(html)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        sys.exit("install chromium (apt-get install chromium) to take the screenshot")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={out_png}", "--window-size=1340,925", f"file://{page}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{out_png}: {sent} verzoeken, {len(scrapes)} scrapes")


main()
