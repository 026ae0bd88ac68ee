#!/usr/bin/env python3
"""Regenerates data/model_prices.json from LiteLLM's price table.

    scripts/update-prices.py path/to/model_prices_and_context_window_backup.json

The input is the file `litellm/model_prices_and_context_window_backup.json`
from the litellm wheel on PyPI (MIT licensed; see data/SOURCE.md). The output
keeps what tollgate uses (provider, mode, limits, every price, capability
flags) and writes every price as a decimal string, so it is parsed exactly.
"""
import json
import sys
from decimal import Decimal

KEEP = {"litellm_provider", "mode", "max_input_tokens", "max_output_tokens", "max_tokens",
        "output_vector_size", "deprecation_date", "tiered_pricing"}


def keep(field: str) -> bool:
    return field in KEEP or "cost" in field or field.startswith("supports_")


def price(x):
    if isinstance(x, bool) or not isinstance(x, (int, Decimal)):
        return x
    text = format(Decimal(x), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def main(src: str) -> None:
    data = json.loads(open(src).read(), parse_float=Decimal, parse_int=Decimal)
    out = {}
    for model, spec in sorted(data.items()):
        if model == "sample_spec" or not isinstance(spec, dict):
            continue
        entry = {}
        for field, value in spec.items():
            if not keep(field):
                continue
            if "cost" in field:
                value = price(value)
            elif isinstance(value, Decimal):
                value = int(value) if value == value.to_integral_value() else float(value)
            if field.startswith("supports_") and value is not True:
                continue
            entry[field] = value
        out[model] = entry
    json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=True, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
