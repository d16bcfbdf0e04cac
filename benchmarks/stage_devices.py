"""Which device every stage of a run ran on: each stage record (fine-tune, localize, unlearn, relearn) and every
evaluation result states it (``device``). Fails (exit 1) when any record names another device than EXPECTED.

Usage: python benchmarks/stage_devices.py RUN_DIR EXPECTED   (EXPECTED: a device type, e.g. cuda)"""

import json
import sys
from pathlib import Path


def devices(run: Path) -> dict[str, str]:
    found = {}
    for path in sorted(run.rglob("*.json")):
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            continue
        device = record.get("device") or (record.get("meta") or {}).get("device")
        if "stage" in record or "meta" in record:
            found[str(path.relative_to(run))] = device
    return found


def main() -> int:
    run, expected = Path(sys.argv[1]), sys.argv[2]
    found = devices(run)
    wrong = {path: device for path, device in found.items() if not device or device.split(":")[0] != expected}
    print(f"{len(found)} stage records under {run}; on {expected}: {len(found) - len(wrong)}")
    for path, device in wrong.items():
        print(f"  {path}: {device}")
    return 1 if wrong or not found else 0


if __name__ == "__main__":
    sys.exit(main())
