"""The OTP enrollment QR code as an SVG document, drawn server-side (no script, no image file).

``qrcode``'s :class:`~qrcode.image.svg.SvgPathImage` draws the modules as one ``<path>``; the
document carries a ``<title>`` for screen readers and no ``style`` attribute (the console's CSP
forbids inline styles), so it can be inserted into the page as it is.
"""

from __future__ import annotations

import qrcode  # type: ignore[import-untyped]
import qrcode.image.svg  # type: ignore[import-untyped]

__all__ = ["qr_svg"]


def qr_svg(text: str) -> str:
    """An ``<svg>`` element encoding ``text`` (e.g. an ``otpauth://`` URI)."""
    qr = qrcode.QRCode(border=4, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    image = qr.make_image(image_factory=qrcode.image.svg.SvgPathImage)
    svg = str(image.to_string(encoding="unicode"))
    head, sep, rest = svg.partition(">")
    title = "<title>QR code of the OTP enrollment URI</title>"
    return f'{head} role="img" aria-label="OTP enrollment QR code"{sep}{title}{rest}'
