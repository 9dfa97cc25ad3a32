"""serverless-max predict: the command line."""

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from . import __version__
from .inputs import ManifestColumns, Shard, UsageError, can_count, iter_inputs
from .platforms import THROTTLED, TRANSIENT, classify, message_of, platform_of
from .progress import Progress
from .results import ResultsWriter
from .runner import BACKOFF_BASE, BACKOFF_CAP, Runner, Settings
from .spec import (HOW_TO_SHAPE, LIST, MULTIPART, QUERY, RequestShape, apply_flags, model_base, shape_from_spec,
                   under_base)
from .stats import summary
from .transport import HttpTransport, LambdaTransport, SendError, Signer, parse_lambda_target, region_of_function_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Send every input to a deployed MAX model, as many at once as the platform allows, and write one
JSON line per input to the results file. The request's shape (file field, form fields, JSON body)
is read from URL/swagger.json; flags override it.

URL is the deployed model's base URL (its routes are URL/model/predict, URL/swagger.json):
  OpenWhisk web action   https://HOST/api/v1/web/NAMESPACE/default/ACTION
  Cloud Run / Knative    https://SERVICE-HASH.a.run.app, http://SERVICE.NAMESPACE.example.com
  Lambda function URL    https://ID.lambda-url.REGION.on.aws  (--aws-sigv4 for IAM auth)
  Lambda Invoke API      lambda://FUNCTION  (SigV4; --lambda-endpoint for the Runtime Interface Emulator)
  local endpoint         http://127.0.0.1:3233/api/v1/web/guest/default/ACTION
"""

EPILOG = """\
inputs: files, directories (walked, dotfiles skipped), globs ('imgs/**/*.png'), '-' for paths on
stdin; or --manifest rows (JSONL or CSV). Text models read each file as one text, or a manifest's
text column. Inputs stream: a million of them need no more memory than ten.

each results line: input, status (ok|failed), http_status, attempts, latency_ms, started_at,
finished_at, attempt_log [[start, end, http status or error kind], ...], response (the model's
JSON; for binary answers {file, content_type, bytes}), request_id, error, error_kind, batch.

exit status: 0 every input ok; 1 some inputs failed (their lines say why); 2 usage or setup error
(a bad flag or manifest line, a URL that is not a reachable model, a results file that cannot be
written); 130 interrupted (--resume finishes the run).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serverless-max", description="Batch predictions against a deployed MAX "
                                     "model, at the platform's limit.")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    predict = commands.add_parser("predict", help="send every input to the model, one results line per input",
                                  description=DESCRIPTION, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("url", metavar="URL", help="the deployed model's base URL, or lambda://FUNCTION")
    predict.add_argument("inputs", metavar="INPUT", nargs="*", help="files, directories, globs, or - (paths on stdin)")
    out = predict.add_argument_group("output")
    out.add_argument("-o", "--output", default="results.jsonl", metavar="FILE",
                     help="the results file, one JSON line per input (default %(default)s)")
    out.add_argument("--output-dir", metavar="DIR", help="where binary answers (images...) go, named after their "
                     "input (default: FILE.files beside the results file)")
    out.add_argument("--resume", action="store_true", help="finish a run: keep FILE's ok lines, redo every other "
                     "input (failed, interrupted, never sent)")
    out.add_argument("--plot", metavar="FILE", help="draw the run at its end (latency and requests in flight over "
                     "time): .png, .svg, .pdf, or .html for a self-contained page; needs the [plot] extra")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary; errors only")
    out.add_argument("--progress-interval", type=float, default=None, metavar="SECONDS",
                     help="seconds between progress updates (default 0.5 on a terminal, 10 otherwise)")
    out.add_argument("--dry-run", action="store_true", help="show the request shape and the first inputs; send "
                     "no predictions")
    source = predict.add_argument_group("inputs")
    source.add_argument("--manifest", metavar="FILE", help="a JSONL or CSV file, one prediction per row (- for stdin)")
    source.add_argument("--file-column", default="path", metavar="NAME",
                        help="the manifest column naming the file to send, for file upload models (default "
                        "%(default)s); the other columns are form fields (JSON fields for JSON models)")
    source.add_argument("--id-column", default="id", metavar="NAME",
                        help="the manifest column naming the input (default %(default)s; else the file, else "
                        "MANIFEST:LINE)")
    source.add_argument("--text-column", metavar="NAME",
                        help="the manifest column holding a text model's text (default: the model's list field)")
    source.add_argument("--shard", metavar="K/N", help="only this machine's share: the inputs whose id hashes to K "
                        "of N (K from 0, e.g. --shard $CLOUD_RUN_TASK_INDEX/$CLOUD_RUN_TASK_COUNT)")
    request = predict.add_argument_group("request shape (default: from URL/swagger.json)")
    request.add_argument("--field", metavar="NAME", help="the multipart file field (image, audio, file...)")
    request.add_argument("--json-field", metavar="NAME", help="the JSON list field of a text model (text...)")
    request.add_argument("-F", "--form", action="append", default=[], metavar="NAME=VALUE",
                         help="a form field sent with every request (a query parameter where the spec has it there, a "
                         "JSON field for JSON models); repeatable")
    request.add_argument("--path", metavar="PATH", help="the predict route (default from the spec, else /model/predict)")
    request.add_argument("--batch-size", type=int, default=1, metavar="N",
                         help="inputs per request for models that take a list (text models); answers are split "
                         "back per input (default %(default)s)")
    sending = predict.add_argument_group("sending")
    sending.add_argument("-j", "--jobs", type=int, default=64, metavar="N",
                         help="most requests in flight; throttling lowers it, successes grow it back (default %(default)s)")
    sending.add_argument("--retries", type=int, default=8, metavar="N",
                         help="re-sends after 429, 502, 503, 504, 202 not-ready, connection failures and timeouts "
                         "(default %(default)s)")
    sending.add_argument("--timeout", type=float, default=330.0, metavar="SECONDS",
                         help="one request's limit (default %(default)g: above OpenWhisk's 300 s action maximum)")
    auth = predict.add_argument_group("authentication")
    auth.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                      help="a header sent with every request, e.g. -H \"Authorization: Bearer $TOKEN\"; repeatable")
    auth.add_argument("--whisk-auth", metavar="SECRET", help="X-Require-Whisk-Auth for a secured OpenWhisk web action")
    auth.add_argument("--aws-sigv4", action="store_true", help="sign requests with AWS SigV4 (IAM-authenticated "
                      "function URLs; needs botocore)")
    auth.add_argument("--region", metavar="REGION", help="AWS region for SigV4 and lambda:// (default: AWS config)")
    auth.add_argument("--lambda-endpoint", metavar="URL", help="the Invoke API's endpoint for lambda:// (e.g. "
                      "http://127.0.0.1:9000 for the Runtime Interface Emulator)")
    report = commands.add_parser("report", help="draw a run from its results file",
                                 description="Draw a run from its results file, finished or not: every attempt's "
                                 "latency, requests in flight and attempts per second over time, throttles and "
                                 "failures marked. Needs the [plot] extra (matplotlib).")
    report.add_argument("results", metavar="RESULTS", help="a results file of serverless-max predict")
    report.add_argument("--plot", metavar="FILE", required=True,
                        help="the picture: .png, .svg, .pdf, or .html for a self-contained page with a summary")
    return parser


def _headers(args: argparse.Namespace) -> Dict[str, str]:
    headers = {}
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise UsageError("-H takes 'Name: value', not %r" % header)
        headers[name.strip()] = value.strip()
    if args.whisk_auth:
        headers["X-Require-Whisk-Auth"] = args.whisk_auth
    return headers


def _check(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise UsageError("-j must be at least 1")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.progress_interval is not None and args.progress_interval <= 0:
        raise UsageError("--progress-interval must be positive (--quiet shows no progress)")
    if not args.inputs and not args.manifest:
        raise UsageError("no inputs: give files, directories, globs, - (paths on stdin) or --manifest FILE")
    if args.inputs and args.manifest:
        raise UsageError("give either INPUT arguments or --manifest, not both")
    if args.lambda_endpoint and not args.url.startswith("lambda://"):
        raise UsageError("--lambda-endpoint goes with a lambda://FUNCTION target")


def make_transport(args: argparse.Namespace, headers: Dict[str, str]) -> Any:
    function = parse_lambda_target(args.url)
    connections = args.jobs + 4
    if function is not None:
        return LambdaTransport(function, args.lambda_endpoint, args.region, headers, connections, args.timeout)
    if not args.url.startswith(("http://", "https://")):
        raise UsageError("URL must start with https://, http:// or lambda://, not %r" % args.url)
    signer = Signer(args.region or region_of_function_url(args.url)) if args.aws_sigv4 else None
    return HttpTransport(model_base(args.url), headers, connections, args.timeout, signer)


async def read_shape(transport: Any, args: argparse.Namespace) -> RequestShape:
    """The request shape from swagger.json, then the flags; a clear UsageError when neither says it."""
    flags_say_it = bool(args.field or args.json_field)
    where = "%s/swagger.json" % (args.url if args.url.startswith("lambda://") else model_base(args.url))
    problem: Optional[str] = None
    shape: Optional[RequestShape] = None
    answer = await fetch_spec(transport, where, args.retries, args.quiet)
    if answer is not None:
        if answer.status in (401, 403):
            said = message_of(answer.body, 200)
            problem = ("%s answered %d (%s): this model needs credentials: -H 'Authorization: ...', --whisk-auth "
                       "SECRET, or --aws-sigv4" % (where, answer.status, said))
            if said == "Missing Authentication Token":  # API Gateway's answer for a route it does not have
                problem += "; or, behind API Gateway, only the predict route is deployed: " + HOW_TO_SHAPE
            if not flags_say_it:
                raise UsageError(problem)
    if answer is not None and answer.status not in (401, 403):  # (refused: the flags say the shape, the note why)
        try:
            spec = json.loads(answer.body.decode("utf-8")) if answer.status == 200 else None
        except (ValueError, UnicodeDecodeError):
            spec = None
        if not isinstance(spec, dict) or not ("swagger" in spec or "openapi" in spec):
            problem = ("%s answered %d %s, not a model's API document: this URL does not look like a deployed MAX "
                       "model (check it: it is the model's base URL, whose /swagger.json and /model/predict answer)"
                       % (where, answer.status, "(%s)" % message_of(answer.body, 120)))
        else:
            _follow_redirect(transport, answer, args.quiet)
            try:
                shape = under_base(shape_from_spec(spec), getattr(transport, "base_url", ""))
            except UsageError as error:
                problem = str(error)
    if shape is None and not flags_say_it:
        raise UsageError(problem or "no request shape")
    if shape is None and problem and not args.quiet:
        sys.stderr.write("note: %s; using the flags' request shape\n" % problem)
    return apply_flags(shape, args.field, args.json_field, args.path, args.form)


def _follow_redirect(transport: Any, answer: Any, quiet: bool) -> None:
    """A model whose swagger.json redirected (http:// to https://, a moved host) takes the predictions
    at its new place: a POST that follows a 301/302 turns into a GET, and every input would fail."""
    if not isinstance(transport, HttpTransport) or not answer.url:
        return
    final = answer.url.split("?")[0].rstrip("/")
    moved = model_base(final)
    if final.endswith("/swagger.json") and moved != transport.base_url:  # not a page somewhere else
        if not quiet:
            sys.stderr.write("note: %s redirects to %s; sending there\n" % (transport.base_url, moved))
        transport.base_url = moved


async def fetch_spec(transport: Any, where: str, retries: int, quiet: bool = False) -> Any:
    """GET /swagger.json, re-sent like a prediction while the platform says "not now" (a cold start,
    a throttled namespace); an address that does not answer at all ends the run before it starts.
    Each re-send is told on stderr: a model that stalls would otherwise leave the user in silence."""
    for attempt in range(retries + 1):
        try:
            answer = await transport.send("GET", "/swagger.json")
        except SendError as error:
            if error.kind in ("connection refused", "unknown host", "connection failed") or attempt == retries:
                raise UsageError("cannot reach %s: %s. Check the URL and that the model is deployed" % (where, error))
            verdict, what = None, str(error)
        else:
            verdict = classify(answer.status, answer.headers, answer.body)
            if verdict.kind not in (THROTTLED, TRANSIENT) or attempt == retries:
                return answer
            what = "HTTP %d (%s)" % (answer.status, message_of(answer.body, 120))
        if not quiet:
            sys.stderr.write("note: %s: %s; re-sending (%d of --retries %d; Ctrl-C stops)\n"
                             % (where, what, attempt + 1, retries))
        await asyncio.sleep(max(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)),
                                verdict.retry_after or 0.0 if verdict else 0.0))
    return None


def describe(shape: RequestShape, args: argparse.Namespace) -> str:
    if shape.kind == MULTIPART:
        what = "multipart/form-data, file field %r%s" % (shape.file_field, "".join(
            ", %s=%s" % item for item in sorted(shape.form.items())))
    elif shape.kind == LIST:
        what = "JSON {%r: [...]} with %d input(s) per request%s" % (shape.list_field, args.batch_size, "".join(
            ", %s=%s" % (key, json.dumps(value)) for key, value in sorted(shape.body.items())))
    elif shape.kind == QUERY:
        what = "no body, each manifest row's columns as query parameters"
    else:
        what = "JSON body from each manifest row%s" % "".join(
            ", %s=%s" % (key, json.dumps(value)) for key, value in sorted(shape.body.items()))
    if shape.query:
        what += "; query " + "&".join("%s=%s" % item for item in sorted(shape.query.items()))
    return "POST %s: %s (shape from %s)" % (shape.path, what, shape.source)


def _count(runner: Runner, args: argparse.Namespace, columns: ManifestColumns, shard: Optional[Shard]) -> None:
    try:
        runner.stats.total = sum(1 for item in iter_inputs(args.inputs, args.manifest, columns, shard)
                                 if not runner.writer.is_done(item.id))
    except UsageError:
        pass  # the run itself reports it


async def predict(args: argparse.Namespace) -> int:
    _check(args)
    headers = _headers(args)
    shard = Shard.parse(args.shard) if args.shard else None
    transport = make_transport(args, headers)
    async with transport:
        shape = await read_shape(transport, args)
        columns = ManifestColumns(file=args.file_column if shape.kind in (MULTIPART, LIST) else None,
                                  id=args.id_column, file_required=shape.kind == MULTIPART,
                                  text=args.text_column or (shape.list_field if shape.kind == LIST else None))
        inputs = iter_inputs(args.inputs, args.manifest, columns, shard)
        if args.dry_run:
            print("target: %s (%s)" % (args.url, platform_of(args.url)))
            print("request: " + describe(shape, args))
            for number, item in enumerate(inputs):
                if number == 10:
                    print("...")
                    break
                print("input: %s" % item.id)
            return EXIT_OK
        writer = ResultsWriter(args.output, args.resume)
        settings = Settings(jobs=args.jobs, retries=args.retries, batch_size=args.batch_size,
                            output_dir=args.output_dir)
        runner = Runner(shape, transport, writer, settings)
        if not args.quiet:
            sys.stderr.write("%s (%s)\n%s\n" % (args.url, platform_of(args.url), describe(shape, args)))
            if args.batch_size > 1 and shape.kind != LIST:
                sys.stderr.write("note: --batch-size %d is for models that take a list (text models); this one "
                                 "takes one input per request\n" % args.batch_size)
        bar = sys.stderr.isatty() and not args.quiet
        if not args.quiet and can_count(args.inputs, args.manifest):  # the total, for the bar and the plain lines
            threading.Thread(target=_count, args=(runner, args, columns, shard), daemon=True).start()
        interval = args.progress_interval or (0.5 if bar else 10.0)
        progress = None if args.quiet else Progress(runner, sys.stderr, bar, interval)
        run = asyncio.ensure_future(runner.run(inputs))
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            runner.stats.interrupted = True
            run.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt)
        ticker = asyncio.ensure_future(progress.run()) if progress else None
        try:
            await run
        except asyncio.CancelledError:
            if not runner.stats.interrupted:
                raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            if ticker is not None:
                ticker.cancel()
            if progress is not None:
                progress.close()
            writer.close()
        stats = runner.stats
        if not args.quiet:
            finished = stats.finished or time.time()
            # A limit that never moved settled nowhere: the run stayed at -j (None says so).
            settled = runner.limiter.settled(stats.started + (finished - stats.started) / 2) \
                if runner.limiter.history else None
            summary(stats, settled, args.output)
    if args.plot:
        plot(args.output, args.plot)
    if stats.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if stats.failed else EXIT_OK


def plot(results: str, picture: str) -> bool:
    """Draws the run; says why not (no matplotlib, nothing to draw) and answers False when it cannot."""
    from .report import ReportError, write_plot
    try:
        write_plot(results, picture)
    except ReportError as error:
        sys.stderr.write("serverless-max: no picture: %s\n" % error)
        return False
    sys.stderr.write("plot: %s\n" % picture)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "predict" and not [item for item in extra if item.startswith("-") and item != "-"]:
        args.inputs += extra  # INPUTs after options (URL -j 4 photos/): argparse leaves them over
    elif extra:
        parser.error("unrecognized arguments: %s" % " ".join(extra))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "report":
        return EXIT_OK if plot(args.results, args.plot) else EXIT_USAGE
    try:
        return asyncio.run(predict(args))
    except UsageError as error:
        sys.stderr.write("serverless-max: error: %s\n" % error)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # --dry-run | head: the reader has seen enough (before OSError, its base class)
        os._exit(EXIT_FAILED)
    except OSError as error:  # the results file or the output directory: a full disk, a read-only place
        sys.stderr.write("serverless-max: error: %s\n" % error)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
