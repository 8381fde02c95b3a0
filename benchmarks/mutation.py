"""Mutation testing (issue 17): run mutmut over the methods' code and write its score and survivors.

    python benchmarks/mutation.py run --label after           # mutmut run, then the snapshot and the report
    python benchmarks/mutation.py snapshot --label before --root ../old-checkout   # read a finished run elsewhere
    python benchmarks/mutation.py report                       # mutation.md from the saved snapshots
    python benchmarks/mutation.py run --label before --merge 'accord.balance.cp.*'   # one module, added to `before`
    python benchmarks/mutation.py rerun --from before --label after   # before's survivors again, with the new tests

``make mutate`` calls ``run``. What is mutated and which tests run are ``[tool.mutmut]`` in pyproject.toml
(``only_mutate``: objectives/, balance/, augment/ and the method files; ``pytest_add_cli_args_test_selection``: the
unit-test files of those). mutmut 3 runs, for each mutant, the tests that executed the mutated function when it
collected its stats. Not in CI: a full run takes hours on 2 cores; run it before a release.

A snapshot (``benchmarks/results/mutation_<label>.json``) holds every mutant's status per file and the diff of each
survivor (``mutmut show``). The report (``benchmarks/results/mutation.md``) gives the score per file for each
snapshot, score = (killed + timeout) / (killed + timeout + survived + no tests), and lists the survivors of the
newest snapshot with their triage from ``benchmarks/mutation_triage.json`` (mutant name -> why it is equivalent,
or "killed by ..." naming a test added after the snapshot), so every survivor is either explained there or is work
left.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from accord.core.io import atomic_write_text, write_json

RESULTS = Path("benchmarks/results")
TRIAGE = Path("benchmarks/mutation_triage.json")
KILLED = ("killed", "timeout", "caught by type check", "segfault")
COUNTED = (*KILLED, "survived", "no tests")


def statuses(root: Path) -> dict[str, dict[str, str]]:
    """``{file: {mutant: status}}`` from a mutmut run's ``mutants/**/*.meta`` files under ``root``."""
    try:
        from mutmut.stats import status_by_exit_code
    except ImportError:
        sys.exit("mutation.py: mutmut is not installed (pip install -e '.[mutation]', or make mutate)")
    out: dict[str, dict[str, str]] = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            rel = str(meta.relative_to(root / "mutants")).removesuffix(".meta")
            out[rel] = {k: status_by_exit_code[v] for k, v in codes.items()}
    if not out:
        sys.exit(f"mutation.py: no mutmut results under {root / 'mutants'} (run `mutmut run` there first)")
    return out


DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n) for n in json.load(sys.stdin)}))
"""


def show(root: Path, names: list[str]) -> dict[str, str]:
    """The diffs of mutants (what ``mutmut show`` prints), computed in one process run in ``root``; only the
    changed and hunk lines are kept."""
    res = subprocess.run([sys.executable, "-c", DIFFS], cwd=root, input=json.dumps(names), capture_output=True,
                         text=True, timeout=600, check=True)
    out = {}
    for name, diff in json.loads(res.stdout).items():
        lines = diff.splitlines()
        out[name] = "\n".join(line for line in lines if line.startswith(("-", "+", "@"))
                              and not line.startswith(("---", "+++")))
    return out


def module_of(path: str) -> str:
    """``src/accord/balance/cp.py`` -> ``accord.balance.cp`` (the prefix of that file's mutant names)."""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def snapshot(root: Path, label: str, commit: str, merge: bool = False) -> Path:
    """Save every mutant's status and the survivors' diffs as ``mutation_<label>.json``.

    With ``merge``, files of an existing snapshot of that label that this run did not mutate are kept (a run over
    one folder adds its files to the snapshot of another), and a mutant this run did not reach (``not checked``:
    e.g. ``rerun`` runs only the survivors, and mutmut forgets the other results when its configuration changes)
    keeps its status from the snapshot; each file records the commit it was mutated at.
    """
    per_file = statuses(root)
    ran = {name for f in per_file.values() for name, st in f.items() if st != "not checked"}  # this run's mutants
    commits = dict.fromkeys(per_file, commit)
    dest = RESULTS / f"mutation_{label}.json"
    old_survivors: dict[str, str] = {}
    if merge and dest.is_file():
        old = json.loads(dest.read_text())
        for f, new in per_file.items():
            prev = old["files"].get(f, {})
            per_file[f] = {k: prev.get(k, st) if st == "not checked" else st for k, st in new.items()}
        kept = {f: v for f, v in old["files"].items() if f not in per_file}
        old_survivors = old["survivors"]
        commits = {**{f: old.get("commits", {}).get(f, old["commit"]) for f in kept}, **commits}
        per_file = {**kept, **per_file}
    alive = [name for f in per_file.values() for name, st in f.items() if st in ("survived", "no tests")]
    survivors = {n: old_survivors[n] for n in alive if n in old_survivors and n not in ran}  # diffs of this run: new
    survivors.update(show(root, [n for n in alive if n not in survivors]))
    write_json(dest, {"label": label, "commit": ", ".join(dict.fromkeys(commits[f] for f in sorted(commits))),
                      "commits": commits, "files": dict(sorted(per_file.items())), "survivors": survivors,
                      "written": time.strftime("%Y-%m-%d %H:%M")})
    return dest


def score(counts: Counter[str]) -> tuple[float, int]:
    """``(score, counted mutants)``: killed (incl. timeouts) over killed + survived + no tests."""
    n = sum(counts[s] for s in COUNTED)
    return (sum(counts[s] for s in KILLED) / n if n else float("nan")), n


def triage_kind(why: str | None) -> str:
    """The kind of a survivor's triage entry: killed later, not an equation line, a test still to write (the entry
    starts with "NOT TESTED"), equivalent, or not yet triaged."""
    if not why:
        return "not yet triaged"
    if why.startswith("killed"):
        return "killed later"
    if why.startswith("not an equation line"):
        return "not an equation line"
    if why.startswith("NOT TESTED"):
        return "test still to write"
    return "equivalent"


def report() -> Path:
    """``mutation.md`` from every ``mutation_<label>.json`` (oldest first), survivors of the newest one."""
    snaps = sorted((json.loads(p.read_text()) for p in RESULTS.glob("mutation_*.json")),
                   key=lambda s: (s["label"] != "before", s["label"] != "after", s["written"]))
    if not snaps:
        sys.exit("mutation.py: no snapshots in benchmarks/results (run `snapshot` or `run` first)")
    triage: dict[str, str] = json.loads(TRIAGE.read_text()) if TRIAGE.is_file() else {}
    files = sorted({f for s in snaps for f in s["files"]})
    head = "| file | " + " | ".join(f"{s['label']} ({s['commit']})" for s in snaps) + " |"
    lines = ["# Mutation testing", "",
             "mutmut 3 over the files below (pyproject.toml `[tool.mutmut]`); per snapshot the score (killed and "
             "timed-out mutants over all mutants that ran or had no test) and the number of mutants. Produced by "
             "`python benchmarks/mutation.py run --label <label>` (`make mutate`); `python benchmarks/mutation.py "
             "report` rebuilds this file.", "", head, "|:---|" + "---:|" * len(snaps)]
    totals = [Counter[str]() for _ in snaps]
    for f in files:
        cells = []
        for k, s in enumerate(snaps):
            c = Counter(s["files"].get(f, {}).values())
            totals[k] += c
            sc, n = score(c)
            cells.append(f"{100 * sc:.1f}% of {n}" if n else "–")
        lines.append(f"| `{f}` | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join(f"**{100 * score(t)[0]:.1f}% of {score(t)[1]}**" for t in totals) + " |")
    last_files = snaps[-1]["files"]
    late = [f for f in files if len(snaps) > 1 and score(Counter(last_files.get(f, {}).values()))[1]
            and not score(Counter(snaps[0]["files"].get(f, {}).values()))[1]]
    if late:
        lines += ["", f"First mutated in `{snaps[-1]['label']}` (no `{snaps[0]['label']}` column): "
                  + ", ".join(f"`{f}`" for f in late) + f". Their `{snaps[-1]['label']}` score counts the mutants "
                  "killed by the tests written from that run's own survivors (`rerun`)."]
    unrun = [f for f in files if not any(v != "not checked" for v in last_files.get(f, {}).values())]
    if unrun:
        lines += ["", "Not run yet (every mutant `not checked`: not reached in the session that made the snapshot): "
                  + ", ".join(f"`{f}`" for f in unrun) + "."]
    lines += ["", "Mutants by status: " + "; ".join(
        f"`{s['label']}`: " + ", ".join(f"{k} {v}" for k, v in sorted(t.items())) for s, t in zip(snaps, totals,
                                                                                                strict=True))
              + ". `suspicious` (a child killed by a signal) and `skipped` are left out of the score."]
    last = snaps[-1]
    kinds = Counter(triage_kind(triage.get(n)) for n in last["survivors"])
    lines += ["", f"## Survivors of `{last['label']}` ({len(last['survivors'])})", "",
              "Each is killed by a test written after the snapshot's run, explained as equivalent (no input the code "
              "can receive tells it apart), marked as not on an equation line (an error message's wording, a "
              "default argument no caller uses, a device argument on a CPU-only run), or marked NOT TESTED (a gap "
              "that is a test still to write, in bold); the reasons are in "
              "`benchmarks/mutation_triage.json`. By kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
              + ".", ""]
    for name, diff in sorted(last["survivors"].items()):
        why = triage.get(name)
        kind = triage_kind(why)
        label = {"killed later": why, "equivalent": why if str(why).startswith("equivalent") else f"equivalent: {why}",
                 "not an equation line": why,
                 "test still to write": f"**{why}**", "not yet triaged": "**not yet triaged**"}[kind]
        lines += [f"- `{name}`: {label}", "",
                  "  ```diff", *("  " + d for d in diff.splitlines()), "  ```", ""]
    dest = RESULTS / "mutation.md"
    atomic_write_text(dest, "\n".join(lines) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run", "rerun", "snapshot", "report"])
    parser.add_argument("--label", default="after", help="snapshot name (before / after / a release tag)")
    parser.add_argument("--root", default=".", help="the checkout mutmut ran in")
    parser.add_argument("--children", type=int, default=2, help="mutmut --max-children")
    parser.add_argument("--commit", default=None, help="the commit the mutated code is (default: --root's HEAD)")
    parser.add_argument("--merge", action="store_true",
                        help="add this run's files to the existing snapshot of --label instead of replacing it")
    parser.add_argument("--from", dest="source", default="before",
                        help="rerun: the snapshot whose survivors are run again (with the tests written since)")
    parser.add_argument("mutants", nargs="*", help="mutant names or globs to run (e.g. 'accord.balance.cp.*'); with "
                        "rerun, added to the survivors (the functions whose code changed since the snapshot)")
    args = parser.parse_intermixed_args(argv)
    root = Path(args.root)
    names = list(args.mutants)
    if args.action == "rerun":
        mutated = {module_of(f) + "." for f in statuses(root)}
        old = json.loads((RESULTS / f"mutation_{args.source}.json").read_text())
        names = [n for n in old["survivors"] if n.startswith(tuple(mutated))] + names  # + functions changed since
        if not names:
            sys.exit(f"mutation.py: no survivors of {args.source!r} in the files mutated under {root}")
    if args.action in ("run", "rerun"):
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.children), *names],
                       cwd=root, check=False)
    if args.action != "report":
        commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                               capture_output=True, text=True).stdout.strip()
        print(f"wrote {snapshot(root, args.label, commit, merge=args.merge or args.action == 'rerun')}")
    print(f"wrote {report()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
