"""Turns the measurements into the results table (with budgets and PASS/MISS) and the detail
sections, and writes them into bench/README.md between the results markers.

Verdicts, per the budgets listed in bench/README.md:

- init: ratio (median injector wall / median baseline wall) ≤ 0.5 at 2 ms per request;
- requests per cycle: every counted cycle equals the ideal exactly;
- propagation: p99 ≤ interval + 100 ms (polled) and ≤ 250 ms (files), for the file and the signal;
- idle, 100 values: VmRSS ≤ 40 MiB mixed, ≤ 28 MiB Vault only, ≤ 34 MiB Secrets Manager only (SSM
  only has no budget of its own); "~0 CPU" is read as ≤ 0.1 % of one core and ≤ 1 wakeup a second;
- busy, 1,000 values / 200 templates: peak RSS (VmHWM) ≤ 56 MiB;
- start-up: no boto3 / botocore module imported by an init whose config has no AWS reference; a
  10-value Vault-only init takes ≤ 150 ms more than ``python -c pass``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench_calls import CallsResult
from bench_footprint import Busy, Holders, Idle
from bench_init import InitResult, Phases, break_even
from bench_propagation import Propagation
from bench_startup import Startup
from floor import STANDARD

START = "<!-- results:start (written by bench/run.py; edit outside the markers) -->"
END = "<!-- results:end -->"
IDLE_RSS_BUDGET_MIB = {"mixed": 40.0, "Vault only": 28.0, "Secrets Manager only": 34.0}
BUSY_HWM_BUDGET_MIB = 56.0
SMALL_INIT_BUDGET = 0.150
IDLE_CPU_BUDGET_PERCENT = 0.1
IDLE_WAKEUPS_BUDGET = 1.0


@dataclass
class Results:
    command: str
    date: str
    machine: dict[str, str]
    code: str = ""
    #: fingerprints of injector/ at the start and at the end of the run.
    fingerprints: tuple[str, str] = ("", "")
    runtime: float = 0.0
    load: list[tuple[str, str]] = field(default_factory=list)
    init: list[InitResult] = field(default_factory=list)
    init_tls: InitResult | None = None
    phases: Phases | None = None
    calls: CallsResult | None = None
    polled: Propagation | None = None
    files: Propagation | None = None
    idle: Idle | None = None
    idle_single: list[Idle] = field(default_factory=list)
    holders: list[Holders] = field(default_factory=list)
    busy: Busy | None = None
    startup: Startup | None = None


def verdict(ok: bool, *, floor: float | None = None, budget: float | None = None) -> str:
    """PASS or MISS; a miss whose budget lies below a measured floor says so."""
    if ok:
        return "PASS"
    if floor is not None and budget is not None and floor > budget:
        return "**MISS** (budget below the libraries' floor)"
    return "**MISS**"


def s(seconds: float) -> str:
    """Seconds as text: ms below one second."""
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 1 else f"{seconds:.2f} s"


def mib(kib_value: int) -> str:
    return f"{kib_value / 1024:.1f} MiB"


def _calls_text(calls: Counter[str]) -> str:
    short = {
        "vault GET secret/data/*": "Vault KV GET",
        "aws secretsmanager.BatchGetSecretValue": "BatchGetSecretValue",
        "aws AmazonSSM.GetParameters": "GetParameters",
        "vault GET sys/internal/ui/mounts/*": "mount lookup",
        "vault GET auth/token/lookup-self": "token lookup-self",
    }
    return ", ".join(f"{n} {short.get(k, k)}" for k, n in sorted(calls.items(), key=lambda kv: -kv[1]))


def table(r: Results) -> str:
    rows = ["| # | benchmark | measured (medians) | budget | result |", "|---|---|---|---|---|"]
    for result in r.init:
        ms_ = f"{result.latency * 1000:g} ms"
        budget_text = "ratio ≤ 0.5" if result.latency == 0.002 else "(budget is set at 2 ms)"
        floor_ratio = result.floor.wall / result.wall("baseline") if result.floor is not None else None
        floor_text = (
            f"; the libraries alone (imported, clients built, no request): {s(result.floor.wall)}, "
            f"ratio {floor_ratio:.2f}"
            if result.floor is not None and floor_ratio is not None
            else ""
        )
        rows.append(
            f"| 1 | `injector init`, 100 secrets / 10 templates, {ms_} per request | injector "
            f"{s(result.wall('injector'))} vs sequential hvac/boto3 script {s(result.wall('baseline'))}: "
            f"ratio **{result.ratio:.2f}** ({len(result.injector)} runs each){floor_text} | {budget_text} | "
            f"{verdict(result.ratio <= 0.5, floor=floor_ratio, budget=0.5)} |"
        )
    if r.init_tls is not None:
        t, http = r.init_tls, next((i for i in r.init if i.latency == r.init_tls.latency), None)
        same = f" (over http, table 1: {s(http.wall('injector'))}, CPU {s(http.cpu('injector'))})" if http else ""
        rows.append(
            f"| 1 | `injector init`, 100 secrets / 10 templates, {t.latency * 1000:g} ms per request, both backends "
            f"over TLS (certifi's bundle) | {s(t.wall('injector'))}, CPU {s(t.cpu('injector'))} "
            f"({len(t.injector)} runs){same} | — | info |"
        )
    if r.calls is not None:
        c = r.calls
        per_cycle = sorted({sum(cycle.values()) for cycle in c.cycles})
        rows.append(
            f"| 2 | backend requests per refresh cycle, 100 secrets | {'/'.join(map(str, per_cycle))} in each of "
            f"{len(c.cycles)} cycles ({_calls_text(c.cycles[0])}) | = ideal: {c.ideal_total} | {verdict(c.passed)} |"
        )
    if r.polled is not None:
        p, interval = r.polled, r.polled.interval or 0.0
        for which, label in (("to_file", "file changed"), ("to_signal", "app's SIGHUP handler ran")):
            p50, p99 = p.p(which, 50), p.p(which, 99)
            rows.append(
                f"| 3 | Vault KV change → {label}, polled, interval {interval:g} s ({len(getattr(p, which))} changes) "
                f"| p50 {s(p50)}, p99 {s(p99)}; minus the interval: p50 {s(p50 - interval)}, p99 {s(p99 - interval)}; "
                f"max {s(max(getattr(p, which)))} | p99 ≤ interval + 100 ms | {verdict(p99 <= p.budget)} |"
            )
    if r.files is not None:
        f = r.files
        for which, label in (("to_file", "file changed"), ("to_signal", "app's SIGHUP handler ran")):
            p50, p99 = f.p(which, 50), f.p(which, 99)
            rows.append(
                f"| 3 | ConfigMap `..data` swap of a `file:` source → {label} ({len(getattr(f, which))} changes) | "
                f"p50 {s(p50)}, p99 {s(p99)}, max {s(max(getattr(f, which)))} | p99 ≤ 250 ms | "
                f"{verdict(p99 <= f.budget)} |"
            )
    libraries = {h.label: h.libraries for h in r.holders if h.libraries is not None}
    for i in ([r.idle] if r.idle is not None else []) + r.idle_single:
        budget = IDLE_RSS_BUDGET_MIB.get(i.label)
        floor = libraries.get(i.label)
        floor_mib = floor.imports_kib / 1024 if floor is not None else None
        floor_text = f"; the libraries it needs, imported alone: {mib(floor.imports_kib)}" if floor else ""
        rows.append(
            f"| 4 | sidecar idle RSS, {i.values} values, {i.label} | VmRSS {mib(i.rss_kib)} (max of {i.seconds:.0f} "
            f"samples), VmHWM {mib(i.hwm_kib)}, {i.threads} threads{floor_text} | "
            + (
                f"≤ {budget:g} MiB | {verdict(i.rss_kib / 1024 <= budget, floor=floor_mib, budget=budget)} |"
                if budget
                else "— | info |"
            )
        )
    if r.idle is not None:
        i = r.idle
        ok = i.cpu_percent <= IDLE_CPU_BUDGET_PERCENT and i.wakeups_per_second <= IDLE_WAKEUPS_BUDGET
        rows.append(
            f"| 4 | sidecar idle CPU over {i.seconds:.0f} s, nothing due | {i.cpu_percent:.2f} % of a core "
            f"({i.cpu * 1000:.0f} ms CPU), {i.wakeups_per_second:.1f} wakeups/s, {i.threads} threads | ~0 "
            f"(≤ {IDLE_CPU_BUDGET_PERCENT:g} %, ≤ {IDLE_WAKEUPS_BUDGET:g} wakeup/s) | {verdict(ok)} |"
        )
    if r.busy is not None:
        b = r.busy
        rows.append(
            f"| 4 | sidecar, {b.size:,} secrets / {b.templates} templates | start → ready {s(b.ready)}; cycle with "
            f"nothing changed {s(b.unchanged_span)} ({sum(b.unchanged_calls.values())} requests, ideal "
            f"{sum(b.ideal.values())}); cycle with every value changed {s(b.full_cycle)} ({s(b.full_cycle_cpu)} CPU); "
            f"peak RSS (VmHWM) **{mib(b.hwm_kib)}** | VmHWM ≤ {BUSY_HWM_BUDGET_MIB:g} MiB | "
            f"{verdict(b.hwm_kib / 1024 <= BUSY_HWM_BUDGET_MIB)} |"
        )
    if r.startup is not None:
        st = r.startup
        rows.append(f"| 5 | `injector --version` | {s(st.version_wall)} | — | info |")
        rows.append(
            f"| 5 | `injector init` without AWS (40 Vault values, 10 templates, 2 ms) | {s(st.init_no_aws_wall)}; "
            f"imports {s(st.no_aws.total)} (with AWS, in sequence: {s(st.with_aws.total)}); boto3/botocore imported: "
            f"{'no' if st.boto3_absent else 'YES'} | boto3 not imported | {verdict(st.boto3_absent)} |"
        )
        if st.small_values:
            extra = st.small_init_wall - st.python_wall
            floor_extra = st.small_floor.wall - st.python_wall if st.small_floor is not None else None
            floor_text = (
                f"; the libraries alone (Jinja2, PyYAML, hvac imported, a client built): +{s(floor_extra)}"
                if floor_extra is not None
                else ""
            )
            rows.append(
                f"| 5 | `injector init`, Vault only, {st.small_values} values, 2 ms, against `python -c pass` | "
                f"{s(st.small_init_wall)} vs {s(st.python_wall)}: **+{s(extra)}**{floor_text} | "
                f"≤ +{s(SMALL_INIT_BUDGET)} | "
                f"{verdict(extra <= SMALL_INIT_BUDGET, floor=floor_extra, budget=SMALL_INIT_BUDGET)} |"
            )
            inline_slow, named_slow = st.small_slow
            rows.append(
                f"| 5 | the same, the values declared under `secrets:` (as deploy/ and the webhook write them) | "
                f"{s(st.small_named_wall)} vs "
                f"{s(st.python_wall)}: +{s(st.small_named_wall - st.python_wall)}; at 20 ms per request, "
                f"{s(named_slow)} against {s(inline_slow)} with the references in the templates | — | info |"
            )
    return "\n".join(rows)


def details(r: Results) -> str:
    out: list[str] = []
    if r.init:
        out += [
            "### 1. `init` against the baseline",
            "",
            "| per request | who | wall | CPU (utime+stime) | own work time | requests |",
            "|---|---|---|---|---|---|",
        ]
        for result in r.init:
            for who, label in (("injector", "`injector init`"), ("baseline", "`baseline.py`")):
                out.append(
                    f"| {result.latency * 1000:g} ms | {label} | {s(result.wall(who))} | {s(result.cpu(who))} | "
                    f"{s(result.work(who))} | {result.calls(who)} |"
                )
        even = break_even(r.init)
        out += [
            "",
            'Own work time: the injector\'s "rendered … in X" (from `run_init` start: it includes the lazy '
            "imports of hvac and botocore and building the clients); the baseline's time after its imports "
            "(client creation included). Wall times are whole processes.",
        ]
        if even is not None and even > 0:
            out += [
                "",
                f"A straight line through the two latencies puts the ratio at 0.5 at about **{even * 1000:.1f} ms** "
                "per request.",
            ]
        elif even is not None:
            out += [
                "",
                "A straight line through the two latencies keeps the ratio under 0.5 at every latency: it would "
                "reach 0.5 only below 0 ms per request.",
            ]
        out.append("")
    if r.phases is not None:
        ph = r.phases
        out += [
            f"### 1b. Where `init` spends its time (`bench/phases.py`, 2 ms, medians of {ph.runs})",
            "",
            "| phase | wall | CPU |",
            "|---|---|---|",
        ]
        out += [f"| {name} | {s(wall)} | {s(cpu)} |" for name, wall, cpu in ph.phases]
        out += [
            f"| **total** (interpreter start not included) | {s(ph.total_wall)} | {s(ph.total_cpu)} |",
            "",
            "cProfile of building the two botocore clients (cumulative; a separate run, the profiler slows it):",
            "",
            "```",
            *[f"{seconds * 1000:7.1f} ms  {name}" for name, seconds in ph.aws_clients_top],
            "```",
            "",
        ]
    if r.calls is not None:
        c = r.calls
        out += [
            "### 2. Requests per cycle",
            "",
            f"- ideal: {_calls_text(Counter(c.ideal))}",
            f"- first render (start → ready): {sum(c.first_render.values())} — {_calls_text(c.first_render)}",
        ]
        for n, (cycle, span) in enumerate(zip(c.cycles, c.cycle_spans, strict=True), 1):
            out.append(f"- cycle {n}: {sum(cycle.values())} — {_calls_text(cycle)} (burst {s(span)})")
        out.append("")
    for p in (r.polled, r.files):
        if p is None:
            continue
        out += [f"### 3. Propagation, {p.name}", "", "| | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]
        for which, label in (("to_file", "change → file"), ("to_signal", "change → SIGHUP handler")):
            values = getattr(p, which)
            out.append(
                f"| {label} | {s(p.p(which, 50))} | {s(p.p(which, 90))} | {s(p.p(which, 99))} | {s(max(values))} |"
            )
        legs = [sig - fil for fil, sig in zip(p.to_file, p.to_signal, strict=True)]
        legs.sort()
        out += ["", f"File → signal leg: median {s(legs[len(legs) // 2])}, max {s(legs[-1])}.", ""]
    if r.idle is not None:
        i = r.idle
        out += [
            "### 4. Idle sidecar, 100 secrets",
            "",
            f"VmRSS {mib(i.rss_kib)}, VmHWM {mib(i.hwm_kib)}; CPU {i.cpu * 1000:.0f} ms in {i.seconds:.0f} s "
            f"({i.cpu_percent:.2f} %); voluntary context switches {i.voluntary} ({i.wakeups_per_second:.1f}/s), "
            f"involuntary {i.involuntary}; {i.threads} threads.",
            "",
        ]
    if r.holders:
        out += holders_details(r)
    if r.startup is not None:
        st = r.startup
        out += [
            "### 5. Import time by top-level package (self time of all its modules, median of runs)",
            "",
            "| # | `init` without AWS | | with AWS (`phases.py`, in sequence) | |",
            "|---|---|---|---|---|",
        ]
        left, right = st.no_aws.top(10), st.with_aws.top(10)
        for n in range(10):
            a = left[n] if n < len(left) else ("", 0.0)
            b = right[n] if n < len(right) else ("", 0.0)
            out.append(f"| {n + 1} | {a[0]} | {s(a[1])} | {b[0]} | {s(b[1])} |")
        out += [
            f"| | **all imports** | {s(st.no_aws.total)} | | {s(st.with_aws.total)} |",
            "",
            "The 10 largest single modules (self time) of `init` without AWS: "
            + ", ".join(f"`{name}` {s(seconds)}" for name, seconds in st.no_aws.top_modules)
            + ".",
            "",
        ]
    if r.load:
        out += ["### Load average (1 / 5 / 15 min) when each benchmark started", ""]
        out += [f"- {name}: {load}" for name, load in r.load]
        out.append("")
    return "\n".join(out)


def holders_details(r: Results) -> list[str]:
    """Where the idle sidecars' memory is: RSS against the import floor, the heap by package."""
    idles = {i.label: i for i in ([r.idle] if r.idle is not None else []) + r.idle_single}
    out = [
        "### 4b. Where the idle sidecar's memory is",
        "",
        "| config | idle VmRSS | its imports alone, bare interpreter | of which the interpreter | idle minus imports "
        "| the libraries alone: imported / with plain clients | Python heap (tracemalloc) | anonymous / files mapped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in r.holders:
        i = idles.get(h.label)
        rss = i.rss_kib if i is not None else 0
        mapped = i.mapped if i is not None else {}
        anon = mapped.get("anonymous", 0)
        files = sum(v for k, v in mapped.items() if k != "anonymous")
        out.append(
            f"| {h.label} | {mib(rss)} | {mib(h.floor['rss_kib'])} ({len(h.heap['modules'])} modules) | "
            f"{mib(h.floor['python_kib'])} | {(rss - h.floor['rss_kib']) / 1024:+.1f} MiB | "
            f"{_libraries_cell(h)} | {h.heap['traced'] / 1048576:.1f} MiB | {mib(anon)} / {mib(files)} |"
        )
    out += import_steps(r.holders, idles)
    mixed = next((h for h in r.holders if h.label == "mixed"), None)
    if mixed is not None:
        i = idles.get("mixed")
        out += [
            "",
            "Python heap of the idle mixed sidecar by package (tracemalloc; module code objects are allocated "
            "by the import system):",
            "",
            ", ".join(f"{name} {size / 1048576:.2f} MiB" for name, size in mixed.heap["by_package"][:12]) + ".",
            "",
            "Largest allocation sites: "
            + ", ".join(f"`{site}` {size / 1024:.0f} KiB" for site, size, _ in mixed.heap["top_lines"][:8])
            + ".",
            "",
        ]
        if i is not None and i.mapped:
            out += [
                "Resident memory of the idle mixed sidecar by mapping (`/proc/PID/smaps`): "
                + ", ".join(f"{k} {mib(v)}" for k, v in sorted(i.mapped.items(), key=lambda kv: -kv[1]))
                + ".",
                "",
            ]
    return out


def import_steps(holders: list[Holders], idles: dict[str, Idle]) -> list[str]:
    """Table 4c: what each group of a sidecar's imports adds (``bench/floor.py``'s steps)."""
    measured = [h for h in holders if h.floor.get("steps")]
    if not measured:
        return []
    out = [
        "",
        "### 4c. What the imports add, one group at a time (`bench/floor.py`)",
        "",
        "Each config's modules imported into a bare interpreter in this order; a cell is the RSS the "
        "group adds, and in parentheses how many modules it added. A module shared by two groups counts "
        "with the first.",
        "",
        "| group | " + " | ".join(h.label for h in measured) + " |",
        "|---|" + "---|" * len(measured),
        "| the interpreter | " + " | ".join(mib(h.floor["python_kib"]) for h in measured) + " |",
    ]
    added: dict[str, list[str]] = {}
    for h in measured:
        previous = h.floor["python_kib"]
        for label, rss, modules, *_ in h.floor["steps"]:
            cell = f"+{(rss - previous) / 1024:.2f} MiB ({modules})" if modules else "—"
            added.setdefault(label, []).append(cell)
            previous = rss
    out += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in added.items()]
    out.append("| **its imports alone** | " + " | ".join(mib(h.floor["rss_kib"]) for h in measured) + " |")
    out.append(
        "| the idle sidecar (table 4) | "
        + " | ".join(mib(idles[h.label].rss_kib) if h.label in idles else "—" for h in measured)
        + " |"
    )
    names = {h.label: step[3] for h in measured for step in h.floor["steps"] if step[0] == STANDARD and len(step) > 3}
    if any(names.values()):
        out += [
            "",
            "The standard library's group: "
            + "; ".join(f"{label}: " + ", ".join(f"`{n}`" for n in group) for label, group in names.items() if group)
            + ".",
        ]
    return out


def _libraries_cell(h: Holders) -> str:
    if h.libraries is None or h.with_clients is None:
        return "—"
    return f"{mib(h.libraries.imports_kib)} / {mib(h.with_clients.rss_kib)} ({', '.join(h.libraries.backends)})"


def block(r: Results) -> str:
    m = r.machine
    head = [
        START,
        "",
        f"Run of {r.date}, command `{r.command}`, {r.runtime:.0f} s in all; code measured: {r.code} "
        f"(injector/ digest {r.fingerprints[0]}"
        + (
            f", **changed during the run**: {r.fingerprints[1]} at the end)."
            if r.fingerprints[0] != r.fingerprints[1]
            else ", unchanged during the run)."
        ),
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, Python {m['python']}, "
        f"Linux {m['kernel']}; load average below (timings move with load, RSS does not).",
        "",
        table(r),
        "",
        details(r),
        END,
    ]
    return "\n".join(head)


def write_readme(path: Path, text: str) -> None:
    """Replaces the results block between the markers (appends one when there is none)."""
    write_section(path, text, START, END)


def write_section(path: Path, text: str, start: str, end: str) -> None:
    """Replaces the block between ``start`` and ``end`` (appends one when there is none)."""
    current = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in current and end in current:
        before = current[: current.index(start)]
        after = current[current.index(end) + len(end) :]
        current = before + text + after
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(current)
