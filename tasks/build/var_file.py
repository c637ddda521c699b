"""Values as HCL for Packer's var file (`-var-file`)."""

from __future__ import annotations

import json
from typing import Any


def hcl_value(value: Any) -> str:
    if isinstance(value, dict):
        inner = "\n".join(f"  {hcl_value(str(k))} = {hcl_value(v)}" for k, v in sorted(value.items()))
        return "{\n" + inner + "\n}"
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # JSON string escapes are HCL's; template sequences must not be interpreted.
    return json.dumps(str(value)).replace("${", "$${").replace("%{", "%%{")
