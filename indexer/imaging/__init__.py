"""Imaging: image bytes to framed pixels, safely.

- `decode.decode_image`: allow-listed formats, pixel limit from the header, EXIF upright.
- `device_decode.prepare_jpegs`: JPEGs decoded and framed on the model's device (nvJPEG).
- `framing`: `Preprocessing` (resize, crop, mean/std) and the collection framings.
- `prepare.prepare_many`: the entry point: bytes in, `PreparedImage` or its error out.
"""
