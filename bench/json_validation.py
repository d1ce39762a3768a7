"""JSON Schema validators on the example order event: jsonschema against fastjsonschema.

    python bench/json_validation.py [--records N]

Both validators are compiled once (jsonschema: ``validator_for(schema)(schema)``, the
cached validator; fastjsonschema: ``compile(schema)``) and then called on the order
envelope of ``tests/integration/schemas/json``; ``json.dumps`` of the same record is
shown for scale. Best of five runs, microseconds per record. No broker needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.factories import JSON_ORDER_SCHEMA, JSON_SCHEMAS_DIR, order  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()

    import fastjsonschema
    from jsonschema.validators import validator_for

    from streamkit.serde.schemas import load_schemas

    schema = load_schemas(JSON_SCHEMAS_DIR)[JSON_ORDER_SCHEMA].definition
    record = {
        "id": "3f7e1c9a-0b5d-4c1e-9a6f-2d8b7c4e5f10",
        "timestamp": 1_700_000_000_000,
        "type": "OrderPlaced",
        "payload": order(3),
    }
    cached = validator_for(schema)(schema)
    compiled = fastjsonschema.compile(schema)
    contenders: dict[str, Callable[[], Any]] = {
        "jsonschema (cached validator)": lambda: cached.validate(record),
        "fastjsonschema (compiled)": lambda: compiled(record),
        "json.dumps (for scale)": lambda: json.dumps(record, separators=(",", ":")),
    }
    print(f"{'validator':32}{'µs/record':>10}")
    for name, call in contenders.items():
        best = min(timeit.repeat(call, number=args.records, repeat=5)) / args.records
        print(f"{name:32}{best * 1e6:>10.1f}")


if __name__ == "__main__":
    main()
