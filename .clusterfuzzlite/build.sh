#!/bin/bash -eu
# Builds fwsim's fuzz targets for ClusterFuzzLite and packs their seed corpora.
# `scenario_legacy` is left out on purpose: it is meant to crash (the field bug), see
# docs/fuzzing.md.
cd "$SRC/fwsim/fuzz"
cargo fuzz build -O
for target in scenario ingress wiring_ops scenario_file; do
  cp "target/x86_64-unknown-linux-gnu/release/$target" "$OUT/"
  (cd "corpus/$target" && zip -q -r "$OUT/${target}_seed_corpus.zip" .)
done
