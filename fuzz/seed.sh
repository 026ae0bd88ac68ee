#!/bin/sh
# Copies the recorded wire fixtures into the fuzz corpora (fuzz/corpus/TARGET/),
# which are not committed. Run from anywhere: fuzz/seed.sh [FIXTURES_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fixtures=${1:-"$here/../../shared/protocols/fixtures"}
[ -d "$fixtures" ] || fixtures="$here/../tests/fixtures/protocols"
[ -d "$fixtures" ] || { echo "no fixtures at $fixtures" >&2; exit 1; }

seed() { # seed TARGET FILE...
    dir="$here/corpus/$1"; shift
    mkdir -p "$dir"
    for f in "$@"; do
        [ -f "$f" ] || continue
        # Prefix the first byte the drivers use as a piece size.
        { printf '\007'; cat "$f"; } > "$dir/$(basename "$(dirname "$f")")_$(basename "$f")"
    done
}

seed sse_decoder "$fixtures"/*/*.sse.txt "$fixtures"/*/*.sse.derived.txt
seed aws_eventstream "$fixtures"/aws_eventstream/*.bin "$fixtures"/bedrock/*.bin
seed provider_openai "$fixtures"/openai/*.resp.json "$fixtures"/openai/*.sse.txt \
    "$fixtures"/openai_compatible/*.resp.json "$fixtures"/openai_compatible/*.sse.txt \
    "$fixtures"/azure/*.resp.json "$fixtures"/azure/*.sse.txt
seed provider_anthropic "$fixtures"/anthropic/*.resp.json "$fixtures"/anthropic/*.sse.txt
seed provider_gemini "$fixtures"/gemini/*.resp.json "$fixtures"/gemini/*.sse.txt
seed provider_bedrock "$fixtures"/bedrock/*.resp.json "$fixtures"/bedrock/*.bin
seed provider_cohere "$fixtures"/cohere/*.resp.json "$fixtures"/cohere/*.sse.derived.txt
seed provider_mistral "$fixtures"/mistral/*.resp.json "$fixtures"/mistral/*.sse.txt

# Request parsers take the body as is (no piece-size byte).
mkdir -p "$here/corpus/chat_request" "$here/corpus/messages_request" "$here/corpus/config_loader"
for f in "$fixtures"/openai/*.req.json "$fixtures"/openai_compatible/*.req.json; do
    [ -f "$f" ] && cp "$f" "$here/corpus/chat_request/$(basename "$f")"
done
for f in "$fixtures"/anthropic/*.req.json; do
    [ -f "$f" ] && cp "$f" "$here/corpus/messages_request/$(basename "$f")"
done
for f in "$here"/../tests/fixtures/*.yaml "$here"/../examples/*.yaml "$here"/../docs/*.yaml; do
    [ -f "$f" ] && cp "$f" "$here/corpus/config_loader/$(basename "$f")"
done
echo "seeded: $(ls "$here/corpus" | tr '\n' ' ')"
