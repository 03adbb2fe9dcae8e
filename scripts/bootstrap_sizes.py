"""Print the size and architecture of each function's Lambda bootstrap.

Usage: bootstrap_sizes.py FUNCTION... (reads target/lambda/<function>/bootstrap)
Exits 1 when a bootstrap is missing, is not an aarch64 ELF executable, or is linked as a PIE
although `PATCHPILOT_PIE` is unset (shared/build/bootstrap_link.rs links them `-no-pie`).
"""

import os
import struct
import sys
from pathlib import Path

EM_AARCH64 = 183
ET_EXEC, ET_DYN = 2, 3  # ELF e_type: position-dependent executable, PIE (or shared object)
ROOT = Path(__file__).resolve().parent.parent


def main(functions: list[str]) -> int:
    ok = True
    pie_wanted = os.environ.get("PATCHPILOT_PIE", "") not in ("", "0")
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
        e_type = struct.unpack_from("<H", header, 16)[0] if machine is not None else None
        wanted = ET_DYN if pie_wanted else ET_EXEC
        link = {ET_EXEC: "position-dependent", ET_DYN: "PIE"}.get(e_type, f"e_type={e_type}")
        if e_type != wanted:
            link += f" (NOT {'PIE' if pie_wanted else 'position-dependent'}: see shared/build/bootstrap_link.rs)"
        size = path.stat().st_size
        print(f"  {name:<14} {size:>10,} bytes  {size / 1048576:5.2f} MiB  {arch}  {link}")
        ok = ok and machine == EM_AARCH64 and e_type == wanted
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
