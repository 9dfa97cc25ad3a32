"""Apache OpenWhisk's media type table: which bodies its controller carries as base64, which as text.

The controller base64-encodes binary request bodies into ``__ow_body`` and base64-decodes result
bodies of binary types; everything else travels as text. Shared by the OpenWhisk mapping and the
local endpoint, so the table lives in one place (``tests/data/openwhisk-media-types.json`` records
the controller's own).
"""

from typing import Dict, Tuple

# The media types OpenWhisk's controller knows, and whether it treats each as binary
# (base64 in __ow_body and in result bodies) or text.
REGISTERED_TEXT_TYPES = frozenset(
    """
    application/atom+xml application/base64 application/javascript application/json
    application/json-patch+json application/merge-patch+json application/problem+json
    application/problem+xml application/rss+xml application/soap+xml application/vnd.api+json
    application/vnd.google-earth.kml+xml application/x-latex application/x-vrml
    application/x-www-form-urlencoded application/xhtml+xml application/xml application/xml-dtd
    text/asp text/cache-manifest text/calendar text/css text/csv text/event-stream text/html
    text/markdown text/mcf text/plain text/richtext text/tab-separated-values text/uri-list
    text/vnd.wap.wml text/vnd.wap.wmlscript text/x-asm text/x-c text/x-component text/x-h
    text/x-java-source text/x-pascal text/x-script text/x-scriptcsh text/x-scriptelisp
    text/x-scriptksh text/x-scriptlisp text/x-scriptperl text/x-scriptperl-module
    text/x-scriptphyton text/x-scriptrexx text/x-scriptscheme text/x-scriptsh text/x-scripttcl
    text/x-scripttcsh text/x-scriptzsh text/x-server-parsed-html text/x-setext text/x-sgml
    text/x-speech text/x-uuencode text/x-vcalendar text/x-vcard text/xml
    """.split()
)
REGISTERED_BINARY_TYPES = frozenset(
    """
    application/cbor application/excel application/font-woff application/gnutar
    application/grpc+proto application/java-archive application/lha application/lzx
    application/mspowerpoint application/msword application/octet-stream application/pdf
    application/postscript application/vnd.google-earth.kmz application/vnd.ms-excel
    application/vnd.ms-excel.addin.macroenabled.12
    application/vnd.ms-excel.sheet.binary.macroenabled.12
    application/vnd.ms-excel.sheet.macroenabled.12
    application/vnd.ms-excel.template.macroenabled.12 application/vnd.ms-fontobject
    application/vnd.ms-powerpoint application/vnd.ms-powerpoint.addin.macroenabled.12
    application/vnd.ms-powerpoint.presentation.macroenabled.12
    application/vnd.ms-powerpoint.slideshow.macroenabled.12
    application/vnd.ms-word.document.macroenabled.12
    application/vnd.ms-word.template.macroenabled.12 application/vnd.oasis.opendocument.chart
    application/vnd.oasis.opendocument.database application/vnd.oasis.opendocument.formula
    application/vnd.oasis.opendocument.graphics application/vnd.oasis.opendocument.image
    application/vnd.oasis.opendocument.presentation
    application/vnd.oasis.opendocument.spreadsheet application/vnd.oasis.opendocument.text
    application/vnd.oasis.opendocument.text-master application/vnd.oasis.opendocument.text-web
    application/vnd.openxmlformats-officedocument.presentationml.presentation
    application/vnd.openxmlformats-officedocument.presentationml.slide
    application/vnd.openxmlformats-officedocument.presentationml.slideshow
    application/vnd.openxmlformats-officedocument.presentationml.template
    application/vnd.openxmlformats-officedocument.spreadsheetml.sheet
    application/vnd.openxmlformats-officedocument.spreadsheetml.template
    application/vnd.openxmlformats-officedocument.wordprocessingml.document
    application/vnd.openxmlformats-officedocument.wordprocessingml.template
    application/x-7z-compressed application/x-ace-compressed application/x-apple-diskimage
    application/x-arc-compressed application/x-bzip application/x-bzip2
    application/x-chrome-extension application/x-compress application/x-compressed
    application/x-debian-package application/x-dvi application/x-font-opentype
    application/x-font-truetype application/x-gtar application/x-gzip
    application/x-rar-compressed application/x-redhat-package-manager
    application/x-shockwave-flash application/x-tar application/x-tex application/x-texinfo
    application/x-x509-ca-cert application/x-xpinstall application/zip audio/aiff audio/basic
    audio/midi audio/mod audio/mpeg audio/ogg audio/voc audio/vorbis audio/voxware audio/wav
    audio/webm audio/x-pn-realaudio audio/x-psid audio/xm font/woff font/woff2 image/gif
    image/jpeg image/pict image/png image/svg+xml image/tiff image/webp image/x-icon
    image/x-ms-bmp image/x-pcx image/x-pict image/x-quicktime image/x-rgb image/x-xbitmap
    image/x-xpixmap message/delivery-status message/http message/rfc822 video/avs-video
    video/divx video/gl video/mp4 video/mpeg video/ogg video/quicktime video/webm video/x-dv
    video/x-flv video/x-motion-jpeg video/x-ms-asf video/x-msvideo video/x-sgi-movie
    """.split()
)


def parse_content_type(content_type: str) -> Tuple[str, Dict[str, str]]:
    """Split ``type/subtype; key=value`` into the lowercased media type and its parameters."""
    media_type, _, rest = content_type.partition(";")
    params = {}
    for item in rest.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return media_type.strip().lower(), params


def is_binary(content_type: str) -> bool:
    """OpenWhisk's rule: is a body of this type carried as base64 (True) or as text?"""
    media_type, params = parse_content_type(content_type)
    if media_type.startswith("multipart/") or media_type in REGISTERED_BINARY_TYPES:
        return True
    if media_type in REGISTERED_TEXT_TYPES:
        return False
    return "charset" not in params


def is_json_family(content_type: str) -> bool:
    """The controller's JSON family: exactly ``application/json`` or a ``+json`` type.

    It compares the whole media type, parameters included (only a charset is split off into the
    content type), so ``application/json; foo=bar`` is not JSON to it.
    """
    media_type, params = parse_content_type(content_type)
    if set(params) - {"charset"}:
        return False
    return media_type == "application/json" or media_type.endswith("+json")
