#!/usr/bin/env python3
"""Makes the repositories the browser end-to-end tests download from the local test hub.

    python tests/e2e/make_hub.py ROOT

ROOT/test-org/tiny-chat: the tiny random-weight llama of tests/fixtures/generated (safetensors,
config, tokenizer and chat template), padded with an extra safetensors shard-free blob so a
download takes long enough to watch, and a model card whose Markdown carries script-injection
payloads (the UI must render them inert). ROOT/test-org/other-model: a second search result. ROOT/test-org/gated-chat: a gated repo (manual
approval) whose files need a token.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "fixtures/generated/tiny-llama"

CARD = """---
license: apache-2.0
tags: [mlx, text-generation]
---
# Tiny chat

A tiny random-weight model for tests. <img src=x onerror="window.__xss=1">

<script>window.__xss = 2</script>

[click me](javascript:window.__xss=3) and [data](data:text/html,<script>window.__xss=4</script>)

<a href="javascript:window.__xss=5">raw link</a> <iframe src="javascript:window.__xss=6"></iframe>

```python
print("hello")
```
"""


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    if not (TINY / "model.safetensors").exists():
        print(f"missing {TINY}: run tests/fixtures/make_all.sh first", file=sys.stderr)
        return 1
    repo = root / "test-org" / "tiny-chat"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    for f in TINY.iterdir():
        if f.is_file():
            shutil.copy(f, repo / f.name)
    (repo / "README.md").write_text(CARD, encoding="utf-8")
    (repo / ".hub.json").write_text(json.dumps({
        "tags": ["mlx", "text-generation", "license:apache-2.0"],
        "pipeline_tag": "text-generation", "library_name": "mlx",
        "downloads": 1234, "likes": 56, "license": "apache-2.0",
    }))
    other = root / "test-org" / "other-model"
    if other.exists():
        shutil.rmtree(other)
    other.mkdir(parents=True)
    shutil.copy(TINY / "config.json", other / "config.json")
    (other / "README.md").write_text("# Other model\n\nNothing to see.\n")
    (other / ".hub.json").write_text(json.dumps({"downloads": 7, "likes": 1}))
    gated = root / "test-org" / "gated-chat"
    if gated.exists():
        shutil.rmtree(gated)
    gated.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(TINY / name, gated / name)
    (gated / "README.md").write_text("# Gated chat\n\nAccept the terms to download.\n")
    (gated / ".hub.json").write_text(json.dumps({"gated": "manual", "downloads": 3, "likes": 0}))
    print(f"made {repo}, {other} and {gated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
