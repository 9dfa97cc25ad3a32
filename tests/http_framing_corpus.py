"""The corpus of raw HTTP/1.1 requests the differential test feeds to every parser.

Valid framings, the hostile shapes the runtime must refuse, the published request smuggling
families (CL.TE, TE.CL, TE.TE obfuscations, CL.CL, chunk-size and chunk-extension tricks,
obs-fold, bare CR and LF, NUL, whitespace around header names, pipelining, number forms that
lenient integer parsers take: 0x, +, _, -0), and mutations of the valid ones from a fixed seed.

Run it to rewrite tests/data/http-framing-corpus.json, the committed corpus the test reads:

    python tests/http_framing_corpus.py [--check]

--check exits 1 when the committed file differs from what this module generates.
"""

import argparse
import json
import os
import random
import sys
from typing import Dict, List, Tuple

CORPUS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "http-framing-corpus.json")
MUTATION_SEED = 20
MUTATION_COUNT = 240

H = b"Host: example.test\r\n"

Case = Tuple[str, str, str, bytes]  # (id, family, what it is, request bytes)


def post(headers: bytes, body: bytes, target: bytes = b"/echo") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\n" + H + headers + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n", body)


def valid_cases() -> List[Case]:
    """Requests every careful parser takes; the runtime must take them the same way."""
    many_headers = b"".join(b"X-Header-%d: value %d\r\n" % (n, n) for n in range(60))
    return [
        ("valid-get", "valid", "a GET with Host", b"GET /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-get-query", "valid", "percent-encoded path and a query",
         b"GET /echo/a%20b/%C3%A9?x=1&y=%2F&z HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-post-length", "valid", "a body by Content-Length",
         post(b"Content-Type: text/plain\r\nContent-Length: 11\r\n", b"hello world")),
        ("valid-post-empty", "valid", "Content-Length: 0", post(b"Content-Length: 0\r\n", b"")),
        ("valid-length-leading-zeros", "valid", "Content-Length 005 is 1*DIGIT", post(b"Content-Length: 005\r\n", b"abcde")),
        ("valid-length-ows", "valid", "optional whitespace around the Content-Length value",
         post(b"Content-Length:  \t5 \t\r\n", b"abcde")),
        ("valid-chunked", "valid", "chunked body in three chunks",
         chunked(b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")),
        ("valid-chunked-upper-hex", "valid", "hex digits in upper and lower case",
         chunked(b"A\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n")),
        ("valid-chunked-leading-zeros", "valid", "chunk size 0005 and last chunk 000",
         chunked(b"0005\r\nhello\r\n000\r\n\r\n")),
        ("valid-chunk-extension", "valid", "chunk extensions, token and quoted values",
         chunked(b"5;name=value\r\nhello\r\n5;a;b=\"q d\"\r\nworld\r\n0;last\r\n\r\n")),
        ("valid-chunked-trailer", "valid", "a trailer field after the last chunk",
         chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")),
        ("valid-chunked-case", "valid", "Transfer-Encoding value in mixed case",
         post(b"Transfer-Encoding: ChUnKeD\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("valid-head", "valid", "HEAD", b"HEAD /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-methods", "valid", "PUT, PATCH, DELETE, OPTIONS, pipelined",
         b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\nx"
         b"PATCH /echo HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\ny"
         b"DELETE /echo HTTP/1.1\r\n" + H + b"\r\n"
         b"OPTIONS /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-token-method", "valid", "an extension method that is a token",
         b"PROPFIND /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-http10", "valid", "HTTP/1.0 needs no Host", b"GET /echo HTTP/1.0\r\n\r\n"),
        ("valid-http10-keepalive", "valid", "HTTP/1.0 keep-alive, then a second request",
         b"GET /echo/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo/2 HTTP/1.0\r\n\r\n"),
        ("valid-pipelined", "valid", "three pipelined GETs",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\nGET /echo/3 HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-pipelined-bodies", "valid", "a body by length, a chunked body, then a GET",
         post(b"Content-Length: 3\r\n", b"abc") + chunked(b"2\r\nde\r\n0\r\n\r\n") + b"GET /echo/3 HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-connection-close", "valid", "Connection: close: what follows is not a request",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-expect", "valid", "Expect: 100-continue with a small body",
         post(b"Expect: 100-continue\r\nContent-Length: 4\r\n", b"data")),
        ("valid-empty-value", "valid", "a header with an empty value", b"GET /echo HTTP/1.1\r\n" + H + b"X-Empty:\r\n\r\n"),
        ("valid-inner-whitespace", "valid", "spaces and tabs inside a value, OWS around it",
         b"GET /echo HTTP/1.1\r\n" + H + b"X-Spaced: \t a \t b \t\r\n\r\n"),
        ("valid-obs-text", "valid", "obs-text bytes (0x80-0xFF) in a value",
         b"GET /echo HTTP/1.1\r\n" + H + b"X-Latin: caf\xe9 \xff\r\n\r\n"),
        ("valid-repeated-field", "valid", "a field repeated, joined as a list",
         b"GET /echo HTTP/1.1\r\n" + H + b"Accept: a/b\r\naccept: c/d\r\n\r\n"),
        ("valid-underscore-name", "valid", "a name with '_' (servers drop it rather than confuse it with '-')",
         b"GET /echo HTTP/1.1\r\n" + H + b"X_Forwarded_User: admin\r\nX-Real: 1\r\n\r\n"),
        ("valid-absolute-form", "valid", "absolute-form target, as sent to proxies",
         b"GET http://example.test/echo/abs?q=1 HTTP/1.1\r\n" + H + b"\r\n"),
        ("valid-get-with-body", "valid", "a GET with a body by Content-Length",
         b"GET /echo HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi"),
        ("valid-long-value", "valid", "one 8 KiB header value", b"GET /echo HTTP/1.1\r\n" + H + b"X-Long: " + b"v" * 8192 + b"\r\n\r\n"),
        ("valid-many-headers", "valid", "60 header fields", b"GET /echo HTTP/1.1\r\n" + H + many_headers + b"\r\n"),
        ("valid-binary-body", "valid", "every byte value in a body", post(b"Content-Length: 256\r\n", bytes(range(256)))),
        ("valid-host-port", "valid", "Host with a port", b"GET /echo HTTP/1.1\r\nHost: example.test:8080\r\n\r\n"),
        ("valid-leading-crlf", "valid", "an empty line before the request line (RFC 9112 2.2 lets a server skip it)",
         b"\r\nGET /echo HTTP/1.1\r\n" + H + b"\r\n"),
    ]


def issue_cases() -> List[Case]:
    """Framings a lenient server mis-reads: each a way to smuggle a request or defeat a limit."""
    return [
        ("negative-chunk-size", "chunk-size", "chunk size -3, then a stream of bytes",
         chunked(b"-3\r\n" + b"A" * 200 + b"\r\n0\r\n\r\n")),
        ("negative-chunk-size-2", "chunk-size", "chunk size -1 after a valid chunk",
         chunked(b"3\r\nabc\r\n-1\r\nxy\r\n0\r\n\r\n")),
        ("chunk-size-0x", "chunk-size", "chunk size 0x5", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-plus", "chunk-size", "chunk size +5", chunked(b"+5\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-underscore", "chunk-size", "chunk size 0_5", chunked(b"0_5\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-spaces", "chunk-size", "chunk size ' 5 '", chunked(b" 5 \r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-leading-space", "chunk-size", "chunk size ' 5'", chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-trailing-space", "chunk-size", "chunk size '5 ' (BWS only before ';')", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-trailing-tab", "chunk-size", "chunk size '5\\t'", chunked(b"5\t\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-minus-zero", "chunk-size", "last chunk -0", chunked(b"5\r\nhello\r\n-0\r\n\r\n")),
        ("chunk-size-empty", "chunk-size", "an empty chunk-size line", chunked(b"\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-overflow", "chunk-size", "a chunk size of 2**88", chunked(b"1000000000000000000000\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-64bit", "chunk-size", "a chunk size of 2**64-1 (overflow after adding)",
         chunked(b"5\r\nhello\r\nffffffffffffffff\r\nx\r\n0\r\n\r\n")),
        ("chunk-size-vt", "chunk-size", "chunk size followed by a vertical tab", chunked(b"5\x0b\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-nul", "chunk-size", "chunk size followed by NUL", chunked(b"5\x00\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-nonhex", "chunk-size", "chunk size with a non-hex digit", chunked(b"5g\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-fullwidth", "chunk-size", "chunk size in superscript digit (Python's int takes some)",
         chunked(b"\xb2\r\nhe\r\n0\r\n\r\n")),
        ("chunk-data-no-crlf", "chunk-data", "chunk data not followed by CRLF", chunked(b"5\r\nhelloXX0\r\n\r\n")),
        ("chunk-data-too-long", "chunk-data", "chunk data longer than its size", chunked(b"3\r\nhello\r\n0\r\n\r\n")),
        ("chunk-data-bare-lf", "chunk-data", "chunk data followed by bare LF", chunked(b"5\r\nhello\n0\r\n\r\n")),
        ("chunk-size-bare-lf", "chunk-size", "chunk-size line ended by bare LF", chunked(b"5\nhello\r\n0\r\n\r\n")),
        ("chunk-last-bare-lf", "chunk-size", "last chunk and end ended by bare LF", chunked(b"5\r\nhello\r\n0\n\n")),
        ("chunk-ext-bws", "chunk-ext", "whitespace before ';' (BWS: RFC 9112 7.1.1 allows it, RFC 7230 did not)",
         chunked(b"5 ;a=b\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-bare-lf", "chunk-ext", "a bare LF inside a chunk extension (the 'funky chunks' trick)",
         chunked(b"5;a\nGET /smuggled HTTP/1.1\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-bare-cr", "chunk-ext", "a bare CR inside a chunk extension", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-no-name", "chunk-ext", "a chunk extension with no name", chunked(b"5;\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-nontoken", "chunk-ext", "a chunk extension name that is not a token", chunked(b"5;a b\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-huge", "chunk-ext", "a 32 KiB chunk extension", chunked(b"5;a=" + b"x" * 32768 + b"\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-quote-unterminated", "chunk-ext", "an unterminated quoted chunk-extension value",
         chunked(b"5;a=\"xy\r\nhello\r\n0\r\n\r\n")),
        ("trailer-no-end", "trailer", "trailer section not ended by an empty line", chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n")),
        ("trailer-content-length", "trailer", "Content-Length in the trailer section",
         chunked(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n")),
        ("trailer-bad-line", "trailer", "a trailer line without a colon", chunked(b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n")),
        ("trailer-obs-fold", "trailer", "obs-fold in the trailer section", chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n")),
        ("chunked-then-request", "chunk-data", "a request after the last chunk",
         chunked(b"5\r\nhello\r\n0\r\n\r\n") + b"GET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("cl-cl-different", "CL.CL", "two different Content-Length values",
         post(b"Content-Length: 5\r\nContent-Length: 44\r\n", b"abcdeGET /echo/smuggled HTTP/1.1\r\n" + H + b"\r\n")),
        ("cl-cl-list", "CL.CL", "Content-Length: 5, 44 as a list",
         post(b"Content-Length: 5, 44\r\n", b"abcdeGET /echo/smuggled HTTP/1.1\r\n" + H + b"\r\n")),
        ("cl-cl-equal", "CL.CL", "two equal Content-Length fields (RFC 9110 8.6: a recipient may reject or take them)",
         post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"abcde")),
        ("cl-cl-list-equal", "CL.CL", "Content-Length: 5, 5 as a list", post(b"Content-Length: 5, 5\r\n", b"abcde")),
        ("cl-plus", "CL-number", "Content-Length +5", post(b"Content-Length: +5\r\n", b"abcde")),
        ("cl-underscore", "CL-number", "Content-Length 0_5", post(b"Content-Length: 0_5\r\n", b"abcde")),
        ("cl-minus-zero", "CL-number", "Content-Length -0", post(b"Content-Length: -0\r\n", b"")),
        ("cl-negative", "CL-number", "Content-Length -1", post(b"Content-Length: -1\r\n", b"x")),
        ("cl-hex", "CL-number", "Content-Length 0x5", post(b"Content-Length: 0x5\r\n", b"abcde")),
        ("cl-exponent", "CL-number", "Content-Length 5e0", post(b"Content-Length: 5e0\r\n", b"abcde")),
        ("cl-superscript", "CL-number", "Content-Length in a superscript digit (str.isdigit takes it)",
         post(b"Content-Length: \xb2\r\n", b"ab")),
        ("cl-inner-space", "CL-number", "Content-Length '1 0'", post(b"Content-Length: 1 0\r\n", b"abcdefghij")),
        ("cl-vt", "CL-number", "Content-Length followed by a vertical tab", post(b"Content-Length: 5\x0b\r\n", b"abcde")),
        ("cl-empty", "CL-number", "an empty Content-Length", post(b"Content-Length:\r\n", b"")),
        ("cl-huge", "CL-number", "Content-Length 10**20 (over every limit)", post(b"Content-Length: 100000000000000000000\r\n", b"x")),
        ("cl-over-limit", "CL-number", "Content-Length over the request limit, the body not sent",
         post(b"Content-Length: 40000000\r\n", b"")),
        ("cl-short-body", "CL-number", "a body shorter than its Content-Length, then end of stream",
         post(b"Content-Length: 50\r\n", b"abc")),
        ("expect-plus-length", "Expect", "Expect: 100-continue with Content-Length +40000000",
         post(b"Expect: 100-continue\r\nContent-Length: +40000000\r\n", b"")),
        ("expect-over-limit", "Expect", "Expect: 100-continue with a Content-Length over the limit",
         post(b"Expect: 100-continue\r\nContent-Length: 40000000\r\n", b"")),
        ("expect-unknown", "Expect", "an expectation the server does not know", post(b"Expect: 200-ok\r\nContent-Length: 2\r\n", b"ok")),
        ("expect-http10", "Expect", "Expect: 100-continue on HTTP/1.0",
         b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"),
        ("cl-te", "CL.TE", "Content-Length and Transfer-Encoding: chunked (the classic CL.TE)",
         post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG")),
        ("te-cl", "TE.CL", "Transfer-Encoding: chunked and Content-Length (the classic TE.CL)",
         post(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
              b"8\r\nSMUGGLED\r\n0\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n")),
        ("te-cl-http10", "TE.CL", "Transfer-Encoding and Content-Length on HTTP/1.0",
         b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("te-http10", "TE.TE", "Transfer-Encoding: chunked on HTTP/1.0",
         b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("te-twice", "TE.TE", "two Transfer-Encoding: chunked fields",
         post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-twice-other", "TE.TE", "Transfer-Encoding: chunked, then Transfer-Encoding: x",
         post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-other-then-chunked", "TE.TE", "Transfer-Encoding: x, then Transfer-Encoding: chunked",
         post(b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-list-identity-chunked", "TE.TE", "Transfer-Encoding: identity, chunked",
         post(b"Transfer-Encoding: identity, chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-list-chunked-identity", "TE.TE", "Transfer-Encoding: chunked, identity (chunked not last)",
         post(b"Transfer-Encoding: chunked, identity\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-list-gzip-chunked", "TE.TE", "Transfer-Encoding: gzip, chunked (a coding not implemented)",
         post(b"Transfer-Encoding: gzip, chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-list-double-chunked", "TE.TE", "Transfer-Encoding: chunked, chunked",
         post(b"Transfer-Encoding: chunked, chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-list-empty-element", "TE.TE", "Transfer-Encoding: , chunked", post(b"Transfer-Encoding: , chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-xchunked", "TE.TE", "Transfer-Encoding: xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-chunk", "TE.TE", "Transfer-Encoding: chunk", post(b"Transfer-Encoding: chunk\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-quoted", "TE.TE", "Transfer-Encoding: \"chunked\"", post(b"Transfer-Encoding: \"chunked\"\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-vt", "TE.TE", "Transfer-Encoding: chunked followed by a vertical tab",
         post(b"Transfer-Encoding: chunked\x0b\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-vt-before", "TE.TE", "a vertical tab before chunked", post(b"Transfer-Encoding:\x0bchunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-ff", "TE.TE", "Transfer-Encoding: chunked followed by a form feed", post(b"Transfer-Encoding: chunked\x0c\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-nul", "TE.TE", "Transfer-Encoding: chunked followed by NUL", post(b"Transfer-Encoding: chunked\x00\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-tab", "TE.TE", "a tab as the whitespace before the value", post(b"Transfer-Encoding:\tchunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-no-space", "TE.TE", "no whitespace after the colon", post(b"Transfer-Encoding:chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-space-before-colon", "TE.TE", "Transfer-Encoding : chunked", post(b"Transfer-Encoding : chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-tab-before-colon", "TE.TE", "Transfer-Encoding\\t: chunked", post(b"Transfer-Encoding\t: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-leading-space", "TE.TE", "' Transfer-Encoding: chunked' as the first field line (obs-fold onto nothing)",
         b"POST /echo HTTP/1.1\r\n Transfer-Encoding: chunked\r\n" + H + b"\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("te-folded-value", "TE.TE", "the value of Transfer-Encoding on an obs-fold line",
         post(b"Transfer-Encoding:\r\n chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-folded-into-other", "TE.TE", "Transfer-Encoding hidden in an obs-fold of another field",
         post(b"X-Padding: x\r\n Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-bare-lf-before", "TE.TE", "X: y, bare LF, then Transfer-Encoding",
         post(b"X: y\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-bare-cr-before", "TE.TE", "X: y, bare CR, then Transfer-Encoding",
         post(b"X: y\rTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-underscore", "TE.TE", "Transfer_Encoding: chunked", post(b"Transfer_Encoding: chunked\r\nContent-Length: 3\r\n", b"abc")),
        ("te-non-ascii", "TE.TE", "Transfer-Encoding: chunked\\xff", post(b"Transfer-Encoding: chunked\xff\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-identity", "TE.TE", "Transfer-Encoding: identity (no longer a coding)", post(b"Transfer-Encoding: identity\r\nContent-Length: 3\r\n", b"abc")),
        ("te-cl-smuggle-get", "CL.TE", "a chunked body whose Content-Length covers a smuggled GET",
         post(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
              b"5c\r\nGPOST /echo/smuggled HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n")),
        ("obs-fold", "obs-fold", "a value continued on an obs-fold line", b"GET /echo HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n"),
        ("obs-fold-tab", "obs-fold", "obs-fold with a tab", b"GET /echo HTTP/1.1\r\n" + H + b"X-Folded: a\r\n\tb\r\n\r\n"),
        ("obs-fold-hides-authorization", "obs-fold", "Authorization on an obs-fold line",
         b"GET /echo HTTP/1.1\r\n" + H + b"X-A: 1\r\n Authorization: Bearer x\r\n\r\n"),
        ("space-before-colon", "header-name", "X-Junk : y, then Content-Length",
         post(b"X-Junk : y\r\nContent-Length: 5\r\n", b"abcde")),
        ("space-before-colon-host", "header-name", "Host : example.test",
         b"GET /echo HTTP/1.1\r\nHost : example.test\r\n\r\n"),
        ("tab-before-colon", "header-name", "a tab before the colon", b"GET /echo HTTP/1.1\r\n" + H + b"X-Junk\t: y\r\n\r\n"),
        ("no-colon", "header-name", "a field line without a colon, then Content-Length and Authorization",
         post(b"this line has no colon\r\nAuthorization: Bearer secret\r\nContent-Length: 5\r\n", b"abcde")),
        ("space-in-name", "header-name", "a space inside a field name", post(b"X Junk: y\r\nContent-Length: 5\r\n", b"abcde")),
        ("nul-in-name", "NUL", "NUL inside a field name", post(b"X-\x00Junk: y\r\nContent-Length: 5\r\n", b"abcde")),
        ("nul-in-value", "NUL", "NUL inside a field value", b"GET /echo HTTP/1.1\r\n" + H + b"X-Nul: a\x00b\r\n\r\n"),
        ("nul-in-target", "NUL", "NUL inside the target", b"GET /echo/a\x00b HTTP/1.1\r\n" + H + b"\r\n"),
        ("nul-in-method", "NUL", "NUL inside the method", b"GE\x00T /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("bare-cr-in-value", "bare-CR", "a bare CR inside a value, then Content-Length",
         post(b"X-Junk: a\rb\r\nContent-Length: 5\r\n", b"abcde")),
        ("bare-cr-line-end", "bare-CR", "field lines ended by bare CR", b"GET /echo HTTP/1.1\r" + H + b"X: y\r\r\n"),
        ("bare-cr-request-line", "bare-CR", "the request line ended by bare CR", b"GET /echo HTTP/1.1\rHost: example.test\r\n\r\n"),
        ("bare-lf-everywhere", "bare-LF", "every line ended by bare LF", b"GET /echo HTTP/1.1\nHost: example.test\nX: y\n\n"),
        ("bare-lf-post", "bare-LF", "bare LF line endings with a body", b"POST /echo HTTP/1.1\nHost: example.test\nContent-Length: 3\n\nabc"),
        ("bare-lf-end-of-head", "bare-LF", "CRLF lines, then a bare LF to end the head",
         b"GET /echo HTTP/1.1\r\n" + H + b"\n"),
        ("bare-lf-in-value", "bare-LF", "a bare LF inside what looks like one field line",
         post(b"X-Junk: a\nContent-Length: 5\r\n", b"abcde")),
        ("del-in-value", "field-value", "DEL inside a value", b"GET /echo HTTP/1.1\r\n" + H + b"X-Del: a\x7fb\r\n\r\n"),
        ("ctl-in-value", "field-value", "a control byte (0x01) inside a value", b"GET /echo HTTP/1.1\r\n" + H + b"X-Ctl: a\x01b\r\n\r\n"),
        ("vt-in-value", "field-value", "a vertical tab inside a value", b"GET /echo HTTP/1.1\r\n" + H + b"X-Vt: a\x0bb\r\n\r\n"),
        ("nontoken-name", "header-name", "a field name with '('", b"GET /echo HTTP/1.1\r\n" + H + b"X(a): y\r\n\r\n"),
        ("nontoken-name-at", "header-name", "a field name with '@'", b"GET /echo HTTP/1.1\r\n" + H + b"X@: y\r\n\r\n"),
        ("nontoken-name-non-ascii", "header-name", "a field name with a non-ASCII byte", b"GET /echo HTTP/1.1\r\n" + H + b"X\xe9: y\r\n\r\n"),
        ("empty-name", "header-name", "a field line ': y'", b"GET /echo HTTP/1.1\r\n" + H + b": y\r\n\r\n"),
        ("host-missing", "Host", "HTTP/1.1 without Host", b"GET /echo HTTP/1.1\r\n\r\n"),
        ("host-twice", "Host", "two Host fields", b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
        ("host-twice-equal", "Host", "two equal Host fields", b"GET /echo HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n"),
        ("host-list", "Host", "Host: a.test, b.test", b"GET /echo HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n"),
        ("host-empty", "Host", "an empty Host", b"GET /echo HTTP/1.1\r\nHost:\r\n\r\n"),
        ("host-space", "Host", "a space inside the Host value", b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("host-http10-twice", "Host", "two Host fields on HTTP/1.0", b"GET /echo HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
        ("request-line-double-space", "request-line", "two spaces after the method", b"GET  /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-trailing-space", "request-line", "a space after the version", b"GET /echo HTTP/1.1 \r\n" + H + b"\r\n"),
        ("request-line-tab", "request-line", "tabs as separators", b"GET\t/echo\tHTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-space-in-target", "request-line", "a space inside the target", b"GET /echo/a b HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-lowercase-version", "request-line", "http/1.1 in lower case", b"GET /echo http/1.1\r\n" + H + b"\r\n"),
        ("request-line-version-1-10", "request-line", "HTTP/1.10", b"GET /echo HTTP/1.10\r\n" + H + b"\r\n"),
        ("request-line-version-1-2", "request-line", "HTTP/1.2", b"GET /echo HTTP/1.2\r\n" + H + b"\r\n"),
        ("request-line-version-2", "request-line", "HTTP/2.0 in an HTTP/1 request line", b"GET /echo HTTP/2.0\r\n" + H + b"\r\n"),
        ("request-line-version-short", "request-line", "HTTP/1", b"GET /echo HTTP/1\r\n" + H + b"\r\n"),
        ("request-line-http09", "request-line", "an HTTP/0.9 request line", b"GET /echo\r\n\r\n"),
        ("request-line-nontoken-method", "request-line", "a method with '('", b"G(T /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-del-in-target", "request-line", "DEL inside the target", b"GET /echo/a\x7fb HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-non-ascii-target", "request-line", "a raw non-ASCII byte in the target", b"GET /echo/caf\xe9 HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-fragment", "request-line", "a fragment in the target", b"GET /echo#frag HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-asterisk", "request-line", "OPTIONS *", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-double-slash", "request-line", "a target beginning with //", b"GET //echo/x HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-leading-space", "request-line", "a space before the method", b" GET /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("connect", "request-line", "CONNECT authority-form", b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"),
        ("header-section-20k", "limits", "a 20 KiB header section", b"GET /echo HTTP/1.1\r\n" + H
         + b"".join(b"X-Fill-%d: %s\r\n" % (n, b"f" * 1000) for n in range(20)) + b"\r\n"),
        ("header-section-70k", "limits", "a 70 KiB header section", b"GET /echo HTTP/1.1\r\n" + H
         + b"".join(b"X-Fill-%d: %s\r\n" % (n, b"f" * 1000) for n in range(70)) + b"\r\n"),
        ("header-line-70k", "limits", "one 70 KiB field line", b"GET /echo HTTP/1.1\r\n" + H + b"X-Long: " + b"v" * 70000 + b"\r\n\r\n"),
        ("header-count-120", "limits", "120 field lines", b"GET /echo HTTP/1.1\r\n" + H
         + b"".join(b"X-H-%d: v\r\n" % n for n in range(120)) + b"\r\n"),
        ("request-line-70k", "limits", "a 70 KiB target", b"GET /echo/" + b"t" * 70000 + b" HTTP/1.1\r\n" + H + b"\r\n"),
        ("pipelined-after-error", "pipelined", "a malformed request, then a valid one",
         b"GET /echo HTTP/1.1\r\n" + H + b"X Bad: y\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("pipelined-cl-smuggle", "pipelined", "a GET whose Content-Length swallows the next request",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Content-Length: 44\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("pipelined-garbage-after", "pipelined", "a valid request followed by bytes that are not one",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"\r\nthis is not a request\r\n\r\n"),
        ("pipelined-crlf-between", "pipelined", "an empty line between two requests",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("upgrade", "pipelined", "an Upgrade request, then a request",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("connection-close-token-list", "pipelined", "Connection: keep-alive, close",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Connection: keep-alive, close\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("chunk-size-many-zeros", "chunk-size", "a chunk size with 40 leading zeros",
         chunked(b"0" * 40 + b"5\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-1000-zeros", "chunk-size", "a chunk-size line of 1000 zeros and a 5",
         chunked(b"0" * 1000 + b"5\r\nhello\r\n0\r\n\r\n")),
        ("chunk-size-cr-cr-lf", "chunk-size", "a chunk-size line ended by CR CR LF", chunked(b"5\r\r\nhello\r\n0\r\n\r\n")),
        ("chunk-last-trailing-space", "chunk-size", "last chunk '0 '", chunked(b"5\r\nhello\r\n0 \r\n\r\n")),
        ("chunk-ext-quoted-pair", "chunk-ext", "a quoted chunk-extension value with a quoted-pair",
         chunked(b"5;a=\"x\\\"y\"\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-quoted-crlf", "chunk-ext", "CRLF inside a quoted chunk-extension value",
         chunked(b"5;a=\"x\r\n\"\r\nhello\r\n0\r\n\r\n")),
        ("chunk-ext-ows-equals", "chunk-ext", "whitespace around '=' in a chunk extension (BWS)",
         chunked(b"5;a = b\r\nhello\r\n0\r\n\r\n")),
        ("chunk-many", "chunk-data", "2000 one-byte chunks", chunked(b"1\r\nx\r\n" * 2000 + b"0\r\n\r\n")),
        ("chunk-eof-after-last", "incomplete", "the last chunk, then end of stream without the empty line",
         chunked(b"5\r\nhello\r\n0\r\n")),
        ("trailer-transfer-encoding", "trailer", "Transfer-Encoding in the trailer section",
         chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")),
        ("trailer-bare-lf", "trailer", "a trailer field ended by bare LF", chunked(b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n")),
        ("trailer-nul", "trailer", "NUL in a trailer value", chunked(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n")),
        ("cl-many-zeros", "CL-number", "Content-Length with 30 leading zeros", post(b"Content-Length: " + b"0" * 30 + b"5\r\n", b"abcde")),
        ("cl-cl-case", "CL.CL", "Content-Length and content-length with different values",
         post(b"Content-Length: 5\r\ncontent-length: 6\r\n", b"abcdef")),
        ("cl-cl-zero-equal", "CL.CL", "two Content-Length: 0", post(b"Content-Length: 0\r\nContent-Length: 0\r\n", b"")),
        ("cl-list-spaced", "CL.CL", "Content-Length: 5 , 5", post(b"Content-Length: 5 , 5\r\n", b"abcde")),
        ("cl-te-lowercase", "CL.TE", "content-length then transfer-encoding in lower case",
         post(b"content-length: 4\r\ntransfer-encoding: chunked\r\n", b"0\r\n\r\n")),
        ("te-chunked-then-identity-field", "TE.TE", "Transfer-Encoding: chunked, then Transfer-encoding: identity",
         post(b"Transfer-Encoding: chunked\r\nTransfer-encoding: identity\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-chunked-trailing-comma", "TE.TE", "Transfer-Encoding: chunked,", post(b"Transfer-Encoding: chunked,\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("te-expect", "Expect", "Expect: 100-continue with a chunked body",
         post(b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")),
        ("expect-case", "Expect", "Expect: 100-Continue in mixed case", post(b"Expect: 100-Continue\r\nContent-Length: 2\r\n", b"ok")),
        ("host-space-before-colon-twice", "Host", "Host, then 'Host :' with another value",
         b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost : b.test\r\n\r\n"),
        ("host-obs-text", "Host", "an obs-text byte in Host", b"GET /echo HTTP/1.1\r\nHost: caf\xe9.test\r\n\r\n"),
        ("host-absolute-form-differs", "Host", "absolute-form target naming another host than Host",
         b"GET http://other.test/echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-lowercase-method", "request-line", "get in lower case (methods are case-sensitive tokens)",
         b"get /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-long-method", "request-line", "a 200-character method", b"X" * 200 + b" /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-cr-cr-lf", "bare-CR", "the request line ended by CR CR LF", b"GET /echo HTTP/1.1\r\r\n" + H + b"\r\n"),
        ("request-line-encoded-nul", "request-line", "a percent-encoded NUL in the path", b"GET /echo/a%00b HTTP/1.1\r\n" + H + b"\r\n"),
        ("request-line-query-only-question", "request-line", "a target ending in '?'", b"GET /echo? HTTP/1.1\r\n" + H + b"\r\n"),
        ("leading-two-crlf", "request-line", "two empty lines before the request line", b"\r\n\r\nGET /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("leading-bare-lf", "bare-LF", "a bare LF before the request line", b"\nGET /echo HTTP/1.1\r\n" + H + b"\r\n"),
        ("head-end-cr-only", "incomplete", "a head ended by CRLF CR, then end of stream", b"GET /echo HTTP/1.1\r\n" + H + b"\r"),
        ("connection-close-case", "pipelined", "Connection: Close, then another request",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Connection: Close\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("connection-keepalive-case-http10", "pipelined", "HTTP/1.0 with Connection: Keep-Alive, then another request",
         b"GET /echo/1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /echo/2 HTTP/1.0\r\n\r\n"),
        ("connection-close-keepalive", "pipelined", "Connection: close, keep-alive",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Connection: close, keep-alive\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("connection-two-fields", "pipelined", "Connection: keep-alive and Connection: close as two fields",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\nConnection: close\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("pipelined-http10-body", "pipelined", "HTTP/1.1 request, then an HTTP/1.0 one with a body",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"\r\nPOST /echo/2 HTTP/1.0\r\nContent-Length: 2\r\n\r\nok"),
        ("head-with-body", "pipelined", "HEAD with a body by Content-Length, then a GET",
         b"HEAD /echo/1 HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nabcdeGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("get-chunked-body", "pipelined", "GET with a chunked body, then a GET",
         b"GET /echo/1 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /echo/2 HTTP/1.1\r\n" + H + b"\r\n"),
        ("incomplete-head", "incomplete", "a head cut off before its end", b"GET /echo HTTP/1.1\r\n" + H + b"X-Cut: y"),
        ("incomplete-chunked", "incomplete", "a chunked body cut off", chunked(b"5\r\nhel")),
        ("empty", "incomplete", "no bytes at all", b""),
    ]


# ----------------------------------------------------------------------------- mutations

# Bytes that change how a parser splits a message when they appear where it does not expect them.
_INTERESTING_BYTES = b"\x00\t\n\x0b\x0c\r \"(),-0:;=_\x7f\x80\xff"
_MUTATION_BASES = ("valid-post-length", "valid-chunked", "valid-chunk-extension", "valid-chunked-trailer",
                   "valid-pipelined-bodies", "valid-get-query", "valid-repeated-field", "valid-http10-keepalive",
                   "valid-expect", "valid-methods")


def _mutate(data: bytes, rng: random.Random) -> Tuple[bytes, str]:
    """One random edit of ``data``, and what it was."""
    kind = rng.randrange(6)
    at = rng.randrange(len(data))
    if kind == 0:
        byte = _INTERESTING_BYTES[rng.randrange(len(_INTERESTING_BYTES))]
        return data[:at] + bytes([byte]) + data[at:], "insert %r at %d" % (bytes([byte]), at)
    if kind == 1:
        return data[:at] + data[at + 1:], "delete %r at %d" % (data[at:at + 1], at)
    if kind == 2:
        byte = _INTERESTING_BYTES[rng.randrange(len(_INTERESTING_BYTES))]
        return data[:at] + bytes([byte]) + data[at + 1:], "replace %r at %d by %r" % (data[at:at + 1], at, bytes([byte]))
    lines = data.split(b"\r\n")
    line = rng.randrange(len(lines))
    if kind == 3:
        lines.insert(line, lines[line])
        return b"\r\n".join(lines), "repeat line %d" % line
    if kind == 4:
        ending = (b"\n", b"\r", b"\r\r\n", b"\n\r")[rng.randrange(4)]
        head, tail = b"\r\n".join(lines[:line + 1]), b"\r\n".join(lines[line + 1:])
        return head + ending + tail, "line %d ended by %r" % (line, ending)
    digits = [n for n in range(len(data)) if data[n:n + 1].isdigit()]
    at = digits[rng.randrange(len(digits))]
    digit = b"0123456789"[rng.randrange(10)]
    return data[:at] + bytes([digit]) + data[at + 1:], "digit at %d set to %s" % (at, chr(digit))


def mutation_cases(bases: Dict[str, bytes]) -> List[Case]:
    rng = random.Random(MUTATION_SEED)
    cases = []
    for number in range(MUTATION_COUNT):
        base = _MUTATION_BASES[rng.randrange(len(_MUTATION_BASES))]
        data = bases[base]
        edits = []
        for _ in range(1 + rng.randrange(3)):
            data, edit = _mutate(data, rng)
            edits.append(edit)
        cases.append(("mutation-%03d" % number, "mutation", "%s: %s" % (base, "; ".join(edits)), data))
    return cases


def all_cases() -> List[Case]:
    cases = valid_cases() + issue_cases()
    cases += mutation_cases(dict((case[0], case[3]) for case in cases))
    ids = [case[0] for case in cases]
    assert len(ids) == len(set(ids)), "corpus ids must be unique"
    return cases


def corpus_json() -> str:
    """The corpus as committed: each request as text, one character per byte (latin-1), so that
    JSON's escapes show CR, LF, NUL and the rest as they are."""
    entries = [{"id": case_id, "family": family, "what": what, "request": data.decode("latin-1")}
               for case_id, family, what, data in all_cases()]
    return json.dumps(entries, indent=1, ensure_ascii=True) + "\n"


def load_corpus(path: str = CORPUS_PATH) -> List[Case]:
    with open(path, encoding="ascii") as stream:
        entries = json.load(stream)
    return [(entry["id"], entry["family"], entry["what"], entry["request"].encode("latin-1")) for entry in entries]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) " + os.path.relpath(CORPUS_PATH))
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed corpus is not what this module makes")
    options = parser.parse_args(argv)
    text = corpus_json()
    if options.check:
        with open(CORPUS_PATH, encoding="ascii") as stream:
            same = stream.read() == text
        print("up to date" if same else "stale: run python tests/http_framing_corpus.py")
        return 0 if same else 1
    with open(CORPUS_PATH, "w", encoding="ascii") as stream:
        stream.write(text)
    print("wrote %d requests to %s" % (len(all_cases()), CORPUS_PATH))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
