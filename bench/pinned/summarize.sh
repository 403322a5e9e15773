#!/bin/bash
# Medians over BenchmarkPinnedPaired outputs (scripts/bench --pinned): pgfast/raw, per-query times, pgfast minus raw per query.
# usage: cpu-summ.sh files... : per key, medians of ratio, raw-ns, pgfast-ns, extra ns
awk '
function med(arr, n,   i, j, x) { for (i = 2; i <= n; i++) { x = arr[i]; for (j = i - 1; j > 0 && arr[j] > x; j--) arr[j + 1] = arr[j]; arr[j + 1] = x }; return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
/^BenchmarkPinnedPaired\// {
  split($1, f, "/"); sub(/-[0-9]+$/, "", f[3]); k = f[2] "/" f[3]
  for (i = 2; i < NF; i++) { if ($(i+1) == "pgfast/raw") r = $i; if ($(i+1) == "raw-ns/op") rw = $i; if ($(i+1) == "pgfast-ns/op") pg = $i }
  n[k]++; R[k, n[k]] = r; RW[k, n[k]] = rw; PG[k, n[k]] = pg; EX[k, n[k]] = pg - rw
}
END { for (k in n) { m = n[k]
  for (i = 1; i <= m; i++) a[i] = R[k, i]; mr = med(a, m)
  for (i = 1; i <= m; i++) a[i] = RW[k, i]; mrw = med(a, m)
  for (i = 1; i <= m; i++) a[i] = PG[k, i]; mpg = med(a, m)
  for (i = 1; i <= m; i++) a[i] = EX[k, i]; mex = med(a, m)
  printf "%-22s n=%2d  pgfast/raw %.3f  raw %.1f µs  pgfast %.1f µs  extra %+.2f µs/query\n", k, m, mr, mrw/1000, mpg/1000, mex/1000 } }' "$@" | sort
