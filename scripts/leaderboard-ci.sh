#!/usr/bin/env bash
# Regenerates an experiment's leaderboard and compares it with a base: the steps of the
# README's "Leaderboards in CI", run by its GitHub Actions workflow and by .ci/run alike.
#
#   scripts/leaderboard-ci.sh --base BASE_RESULTS [options] [-- RUN_ARGS...]
#
#   1. regenerate  dmlbench run [EXPERIMENT] --results RESULTS: cells already complete there
#                  are kept, unless their configuration or a plugin's code changed
#   2. render      RESULTS/LEADERBOARD.md, RESULTS/index.html, RESULTS/leaderboard.json, and
#                  the tables in the log
#   3. diff        dmlbench leaderboard diff BASE_RESULTS HEAD: OUT/leaderboard-diff.md (a
#                  pull-request comment), OUT/leaderboard-diff.json, and the tables in the log
#   4. check       the pages in HEAD are what its records render
#
# Options:
#   --base DIR             the results to compare with (e.g. the base branch's committed ones)
#   --experiment FILE      experiment file (default: dmlbench run's, experiments/default.ron)
#   --results DIR          where records and pages go (default: results)
#   --head DIR             the results compared with the base and checked (default: RESULTS);
#                          on a CPU runner that regenerates at smoke size only, the committed
#                          results of the pull request
#   --smoke                one epoch of the first seed (records under RESULTS/<name>-smoke/)
#   --out DIR              where the diff files go (default: leaderboard-ci)
#   --fail-on-regression   fail when a method's Recall@1 falls with intervals apart
#   -- RUN_ARGS...         more arguments for dmlbench run (e.g. --device tch-cuda:0)
#
# DMLBENCH names the dmlbench program (default: dmlbench on PATH). The script fails when a
# cell fails, a record cannot be read, the check fails, or, with --fail-on-regression, on a
# regression; a diff alone never fails it.
set -euo pipefail

dmlbench="${DMLBENCH:-dmlbench}"
base=""
experiment=()
results="results"
head=""
smoke=()
out="leaderboard-ci"
fail_on_regression=()
run_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base="$2"; shift 2 ;;
        --experiment) experiment=("$2"); shift 2 ;;
        --results) results="$2"; shift 2 ;;
        --head) head="$2"; shift 2 ;;
        --smoke) smoke=(--smoke); shift ;;
        --out) out="$2"; shift 2 ;;
        --fail-on-regression) fail_on_regression=(--fail-on-regression); shift ;;
        --) shift; run_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "leaderboard-ci.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$base" ]; then
    echo "leaderboard-ci.sh: --base BASE_RESULTS is required (see --help)" >&2
    exit 2
fi
head="${head:-$results}"
mkdir -p "$out"

echo "== regenerate: dmlbench run ${experiment[*]} ${smoke[*]} --results $results ${run_args[*]}"
"$dmlbench" run "${experiment[@]}" "${smoke[@]}" --results "$results" "${run_args[@]}"

echo "== render"
"$dmlbench" leaderboard "$results"
"$dmlbench" leaderboard "$results" --format md --out "$results/LEADERBOARD.md"
"$dmlbench" leaderboard "$results" --format html --out "$results/index.html"
"$dmlbench" leaderboard "$results" --format json --out "$results/leaderboard.json"

echo "== diff: $base -> $head"
"$dmlbench" leaderboard diff "$base" "$head" --format md --out "$out/leaderboard-diff.md"
"$dmlbench" leaderboard diff "$base" "$head" --format json --out "$out/leaderboard-diff.json"
"$dmlbench" leaderboard diff "$base" "$head" "${fail_on_regression[@]}"

echo "== check: $head"
"$dmlbench" leaderboard "$head" --check
