#!/usr/bin/env bash
# Runs Warden's tests as `go test -json` streams, one stage after another,
# for gotestsum to read (`go tool gotestsum --raw-command -- bash
# hack/go-test-json.sh unit fuzz`), so that one summary and one exit status
# cover every stage.
#
#   unit  every package: go test -json $UNITFLAGS ./...
#   fuzz  every fuzz target found in a *_test.go file, $FUZZTIME each
#
# Every stage runs even when an earlier one failed: a failing unit run must
# not hide what the fuzzers find, and a failing input that an earlier fuzz
# run wrote to testdata/fuzz/ (which then fails the unit run as a seed) must
# not stop the next fuzz run. The exit status is 1 if anything failed.
#
# stdout carries only go test's JSON (gotestsum rejects anything else);
# gotestsum lists whatever reaches stderr under "Errors", so the script
# writes there only when something went wrong.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
UNITFLAGS=${UNITFLAGS:--race -count=1 -timeout 30m}
FUZZTIME=${FUZZTIME:-10s}

# fuzz_targets prints "dir name" for each `func FuzzXxx(` in a test file.
# Found rather than listed, so a new fuzz target runs without anyone
# remembering to add it here; -fuzz with a name that matches nothing would
# pass silently.
fuzz_targets() {
  local files
  # Tracked and new (not ignored) files; find outside a git checkout.
  if files=$(git ls-files --cached --others --exclude-standard '*_test.go' 2>/dev/null); then
    files=$(printf '%s\n' "$files" | sed '/^$/d; s#^#./#')
  else
    files=$(find . -name '*_test.go' -not -path './.git/*')
  fi
  # -s: a tracked file deleted in the work tree is not an error.
  # shellcheck disable=SC2086 # one file name per word: none has spaces
  grep -s -H -o -E '^func Fuzz[A-Za-z0-9_]*\(' $files /dev/null |
    sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' |
    sort -u
}

run_unit() {
  # shellcheck disable=SC2086 # UNITFLAGS is a list of flags
  "$GO" test -json $UNITFLAGS ./...
}

run_fuzz() {
  local targets dir name status=0
  targets=$(fuzz_targets)
  if [ -z "$targets" ]; then
    echo "go-test-json: no fuzz targets found" >&2
    return 1
  fi
  while read -r dir name; do
    local before after new out rc attempt=1
    before=$(ls "$dir/testdata/fuzz/$name" 2>/dev/null)
    while :; do
      # Buffered, so that a run that is tried again leaves no trace in the
      # stream gotestsum counts.
      out=$(mktemp)
      "$GO" test -json -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$dir" >"$out"
      rc=$?
      after=$(ls "$dir/testdata/fuzz/$name" 2>/dev/null)
      new=$(printf '%s\n' "$after" | grep -Fxv -f <(printf '%s\n' "$before"))
      # Go's fuzz coordinator counts gathering the seed corpus's baseline
      # coverage against -fuzztime; on a loaded machine it can end with
      # "context deadline exceeded" before fuzzing proper, having found
      # nothing. That is the harness's clock, not a finding: with no failing
      # input written, run the target once more. A real crash writes its
      # input and is never retried.
      if [ $rc -ne 0 ] && [ -z "$new" ] && [ $attempt -eq 1 ] &&
        grep -q 'context deadline exceeded' "$out"; then
        echo "go-test-json: $dir $name ran out of -fuzztime before fuzzing (no failing input); running it once more" >&2
        rm -f "$out"
        attempt=2
        continue
      fi
      cat "$out"
      rm -f "$out"
      break
    done
    if [ $rc -ne 0 ]; then
      status=1
      # A fresh CI clone loses the failing input with the work tree: print it.
      printf '%s\n' "$new" | while read -r f; do
        [ -n "$f" ] || continue
        echo "go-test-json: failing input $dir/testdata/fuzz/$name/$f:" >&2
        cat "$dir/testdata/fuzz/$name/$f" >&2
      done
    fi
  done <<<"$targets"
  return $status
}

if [ $# -eq 0 ]; then
  echo "usage: $0 unit|fuzz ..." >&2
  exit 2
fi
status=0
for stage in "$@"; do
  case $stage in
  unit) run_unit || status=1 ;;
  fuzz) run_fuzz || status=1 ;;
  *)
    echo "go-test-json: unknown stage $stage" >&2
    exit 2
    ;;
  esac
done
exit $status
