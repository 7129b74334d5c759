#!/usr/bin/env bash
# Remakes the pictures of the README's "Layer insight" section from scikit-image photos:
#   bash docs/insight/make_pictures.sh        (from the repository root, venv in .venv)
# Starts a throwaway server on a free port with its data in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
.venv/bin/python - "$work" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from skimage import data

root = Path(sys.argv[1]) / "photos"
names = ["chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "retina",
         "immunohistochemistry", "colorwheel", "camera", "brick", "grass", "gravel", "moon",
         "coins", "clock", "page", "text"]
for name in names:
    photo = Image.fromarray(getattr(data, name)()).convert("RGB")
    folder = root / name
    folder.mkdir(parents=True)
    photo.save(folder / f"{name}.jpg", quality=92)
    # Four corner crops each, so every subject has neighbours and channels have images.
    w, h = photo.size
    side = int(min(w, h) * 0.6)
    for i, (x, y) in enumerate([(0, 0), (w - side, 0), (0, h - side), (w - side, h - side)]):
        photo.crop((x, y, x + side, y + side)).save(folder / f"{name}-crop{i}.jpg", quality=92)
canvas = Image.new("RGB", (448, 448), (128, 128, 128))
canvas.paste(Image.fromarray(data.chelsea()).resize((224, 224)), (0, 112))
canvas.save(Path(sys.argv[1]) / "cat-on-grey.jpg", quality=95)
# A query that is not stored: the cat cropped, turned 8 degrees, re-saved at quality 60.
cat = Image.fromarray(data.chelsea()).crop((40, 20, 400, 300)).rotate(8, expand=False)
cat.save(Path(sys.argv[1]) / "query-cat.jpg", quality=60)
PY
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
export STRATA_SERVER=127.0.0.1:$port
.venv/bin/strata serve --listen "$STRATA_SERVER" --data "$work/data" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do .venv/bin/strata collections list >/dev/null 2>&1 && break; sleep 1; done
.venv/bin/strata collections create photos
.venv/bin/strata index "$work/photos" --collection photos --labels-from-folders --tags --quiet
out=docs/insight
.venv/bin/strata explain "$work/cat-on-grey.jpg" "$work/photos/coffee/coffee.jpg" \
  --collection photos --depth semantics --out "$work/explain"
.venv/bin/strata explain "$work/cat-on-grey.jpg" --collection photos --depth parts \
  --imagenet-class tabby --out "$work/explain"
.venv/bin/python - "$work/explain" "$out/explain.png" <<'PY'
import sys
from pathlib import Path
from PIL import Image
tiles = [Image.open(p) for p in sorted(Path(sys.argv[1]).glob("*.png"))]
strip = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), tiles[0].height), "white")
x = 0
for t in tiles:
    strip.paste(t, (x, 0))
    x += t.width + 8
strip.save(sys.argv[2])
print("explain strip:", [p.name for p in sorted(Path(sys.argv[1]).glob("*.png"))])
PY
.venv/bin/strata channels --collection photos --depth parts --channels 4 --top 6 --out "$out/channels.png"
.venv/bin/strata search "$work/query-cat.jpg" --collection photos -k 5 \
  --out "$out/search.png"
.venv/bin/strata classify "$work/photos/chelsea/chelsea.jpg" -k 3 --coarse
.venv/bin/strata search "$work/photos/coffee/coffee.jpg" --collection photos --depth semantics \
  -k 3 --meta tag.feline=1
