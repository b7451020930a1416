#!/usr/bin/env python3
"""Draws docs/performance-ratios.svg and docs/performance-latency.svg with gnuplot from the
benchmarks' own output, as `scripts/dev bench` saves it.

Usage: plot_bench.py RESULTS_DIR OUTPUT_DIR [--png]   (--png: PNG files instead of SVG)

RESULTS_DIR holds *.txt (the side-by-side programs' output: its "figure" and "latency" lines,
see bench/bench_support.hpp) and *.json (Google Benchmark's --benchmark_out). Nothing here
measures anything: a figure missing from the results is left out of the picture.
"""
import json
import pathlib
import subprocess
import sys

# Google Benchmark pairs: (label, ours, reference, target ratio), medians of repetitions.
GOOGLE_PAIRS = [
    ("SQS header signature / floor", "BM_sign_sqs_send_message_1KiB",
     "BM_floor_sqs_send_message_1KiB", 1.5),
    ("pre-signed URL / floor", "BM_presign_s3_get", "BM_floor_presign_s3_get", 1.3),
    ("MD5 of ten 1 KiB bodies, lanes / OpenSSL", "BM_md5_ten_bodies_lanes/1024",
     "BM_md5_ten_bodies_openssl/1024", 0),
]


def google_medians(path):
    """name -> median real time (ns) of a Google Benchmark JSON report."""
    data = json.loads(path.read_text())
    times, plain = {}, {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                times[name] = b["real_time"]
        else:
            plain.setdefault(name, []).append(b["real_time"])
    for name, values in plain.items():  # a run without repetitions
        if name not in times:
            values.sort()
            times[name] = values[len(values) // 2]
    return times


def read_results(directory):
    figures, latencies = [], []
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split("\t")
            if fields[0] == "figure" and len(fields) == 7:
                _, bench, what, ours, ref, unit, target = fields
                if float(ref) > 0:
                    figures.append((what, float(ours) / float(ref), float(target)))
            elif fields[0] == "latency" and len(fields) == 7:
                _, bench, what, *values = fields
                short = bench.removesuffix("_bench").replace("_", " ")
                latencies.append((f"{short}: {what}", [float(v) for v in values]))
    times = {}
    for path in sorted(directory.glob("*.json")):
        times.update(google_medians(path))
    for label, ours, ref, target in GOOGLE_PAIRS:
        if ours in times and ref in times and times[ref] > 0:
            figures.append((label, times[ours] / times[ref], target))
    return figures, latencies


def quoted(text):
    return '"' + text.replace('"', "'") + '"'


def plot(script, data, output):
    if output.suffix == ".png":
        script = script.replace("set terminal svg", "set terminal pngcairo")
    data_path = output.with_suffix(".dat")
    data_path.write_text(data)
    try:
        subprocess.run(["gnuplot"], input=script.replace("DATA", str(data_path)), text=True,
                       check=True)
    finally:
        data_path.unlink()


def main():
    args = [a for a in sys.argv[1:] if a != "--png"]
    suffix = ".png" if "--png" in sys.argv[1:] else ".svg"
    if len(args) != 2:
        sys.exit(__doc__)
    results, out = pathlib.Path(args[0]), pathlib.Path(args[1])
    figures, latencies = read_results(results)
    if not figures and not latencies:
        sys.exit(f"plot_bench.py: no figure or latency lines in {results}")

    if figures:
        rows = "".join(
            f"{i} {ratio:.4f} {target if target > 0 else 'NaN'} {quoted(label)}\n"
            for i, (label, ratio, target) in enumerate(figures))
        svg = out / ("performance-ratios" + suffix)
        plot(f"""
set terminal svg size 1000,{220 + 32 * len(figures)} font 'sans,12'
set output '{svg}'
set title 'outbox against its reference, measured in the same run (lower is better)'
set key outside bottom center horizontal
set bmargin 6
set logscale x 2
set xrange [0.0625:4]
set xtics (0.125, 0.25, 0.5, 1, 2, 4)
set xlabel 'ours / reference (CPU or time per operation)'
set yrange [-0.7:{len(figures) - 0.3}]
set ytics nomirror
set grid xtics
set style fill solid 0.6
set arrow from 1, graph 0 to 1, graph 1 nohead dt 2 lc 'gray40'
# A bar from 1 (level with the reference) to the ratio: left of 1 is faster than it.
plot 'DATA' using (1):1:($2 < 1 ? $2 : 1):($2 < 1 ? 1 : $2):($1 - 0.3):($1 + 0.3):ytic(4) \
       with boxxyerror lc 'steelblue' notitle, \
     '' using 2:1 with points pt 7 lc 'steelblue' title 'measured', \
     '' using 3:1 with points pt 2 ps 2 lw 2 lc 'red' title 'target'
""", rows, svg)
        print(f"wrote {svg} ({len(figures)} comparisons)")

    if latencies:
        def value(v):
            return f"{v:.4f}" if v > 0 else "NaN"
        rows = "".join(f"{quoted(what)} " + " ".join(value(v) for v in values) + "\n"
                       for what, values in latencies)
        svg = out / ("performance-latency" + suffix)
        plot(f"""
set terminal svg size 1100,640 font 'sans,12'
set output '{svg}'
set title "Latency from send (or commit) to delivery, under each benchmark's own load"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7
set logscale y 10
set ylabel 'milliseconds'
set yrange [0.01:*]
set xtics rotate by -30 left
set grid ytics
set key outside right top vertical
set bmargin 12
set rmargin 14
plot 'DATA' using 2:xtic(1) title 'p50', '' using 3 title 'p90', \
     '' using 4 title 'p99', '' using 5 title 'p99.9'
""", rows, svg)
        print(f"wrote {svg} ({len(latencies)} series)")


if __name__ == "__main__":
    main()
