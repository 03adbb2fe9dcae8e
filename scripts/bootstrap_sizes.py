"""Print the size and architecture of each function's Lambda bootstrap.

Usage: bootstrap_sizes.py FUNCTION... (reads target/lambda/<function>/bootstrap)
Exits 1 when a bootstrap is missing or is not an aarch64 ELF executable.
"""

import struct
import sys
from pathlib import Path

EM_AARCH64 = 183
ROOT = Path(__file__).resolve().parent.parent


def main(functions: list[str]) -> int:
    ok = True
    print("bootstrap sizes (arm64, stripped):")
    for name in functions:
        path = ROOT / "target" / "lambda" / name / "bootstrap"
        if not path.is_file():
            print(f"  {name:<14} missing: {path}", file=sys.stderr)
            ok = False
            continue
        header = path.read_bytes()[:20]
        machine = struct.unpack_from("<H", header, 18)[0] if header[:4] == b"\x7fELF" else None
        arch = "aarch64" if machine == EM_AARCH64 else f"NOT aarch64 (e_machine={machine})"
        size = path.stat().st_size
        print(f"  {name:<14} {size:>10,} bytes  {size / 1048576:5.2f} MiB  {arch}")
        ok = ok and machine == EM_AARCH64
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
