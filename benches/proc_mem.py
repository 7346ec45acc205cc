#!/usr/bin/env python3
"""Memory of a process and all its descendants (nginx's workers count with
their master), summed, in KiB.

    proc_mem.py PID [pss|hwm]

pss: resident now, each shared page divided among the processes sharing it
(Pss, so a sum over workers counts nginx's shared session cache once);
hwm: each process's peak resident size (VmHWM).
"""

import os
import sys


def tree_kib(root, field="Pss"):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command may hold spaces or parentheses: split after the last ')'.
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/{'smaps_rollup' if field == 'Pss' else 'status'}") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


if __name__ == "__main__":
    which = sys.argv[2] if len(sys.argv) > 2 else "pss"
    print(tree_kib(int(sys.argv[1]), {"pss": "Pss", "hwm": "VmHWM"}[which]))
