"""Command line for the pillar tagger: `classify`, `rules check`, `rules suggest`, `rules eval`.

Standalone they take --rules / --db; under the main CLI, ctx.obj is the Settings object and
its rules_path / database_path are the defaults.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from handlers.tagging import RulesError, Tagger, check_rules, suggest_keywords
from storage.database import StorageUnavailable, connect_read, is_postgres_url
from storage.tagging_queries import corrected_and_others

_RULES_OPTION = click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rules file (default: RULES_PATH, else the packaged handlers/rules/pillars.toml).",
)


def _settings_default(ctx: click.Context, name: str) -> Any:
    obj = ctx.find_root().obj if ctx.obj is None else ctx.obj
    return getattr(obj, name, None) if obj is not None else None


def _rules_path(ctx: click.Context, given: Path | None) -> Path | None:
    return given if given is not None else _settings_default(ctx, "rules_path")


def _load_tagger(ctx: click.Context, given: Path | None) -> Tagger:
    path = _rules_path(ctx, given)
    try:
        return Tagger.from_path(path)
    except RulesError as exc:
        raise click.ClickException(f"rules file is invalid: {exc}\nRun `suarawarga rules check` for details.") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot read rules file {path}: {exc}") from exc


@click.command("classify")
@click.argument("text", required=False)
@click.option("--jsonl", is_flag=True, help="Read JSON lines {id?, text} from stdin, write one result per line.")
@_RULES_OPTION
@click.pass_context
def classify(ctx: click.Context, text: str | None, jsonl: bool, rules_path: Path | None) -> None:
    """Show which pillar the tagger gives TEXT, and why."""
    if jsonl == (text is not None):
        raise click.UsageError("give either TEXT or --jsonl (with JSON lines on stdin)")
    tagger = _load_tagger(ctx, rules_path)
    if jsonl:
        _classify_jsonl(tagger)
        return
    assert text is not None
    result = tagger.classify(text)
    if result.pillar is None:
        click.echo("Pilar: (tidak ada) - perlu dipilah petugas")
        return
    assert result.subtopic is not None
    click.echo(f"Pilar:      {result.pillar}")
    click.echo(
        f"Subtopik:   {result.subtopic} ({tagger.subtopic_label(result.pillar, result.subtopic, 'id')} / "
        f"{tagger.subtopic_label(result.pillar, result.subtopic, 'en')})"
    )
    click.echo(f"Skor:       {result.score:g}")
    click.echo(f"Kata kunci: {', '.join(result.matched)}")
    click.echo(f"Pilar lain: {', '.join(result.secondary) or '-'}")


def _classify_jsonl(tagger: Tagger) -> None:
    stdin = sys.stdin  # CliRunner swaps it in tests
    # One encoder and a plain write per line: click.echo and json.dumps(ensure_ascii=False)
    # cost more per line than tagging itself (~40 us vs ~5 us).
    encode = json.JSONEncoder(ensure_ascii=False).encode
    write = sys.stdout.write  # CliRunner swaps it in tests, too
    classify = tagger.classify
    for n, line in enumerate(stdin, 1):
        if not line.strip():
            continue
        item_id: Any = None
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("line is not a JSON object")
            item_id = item.get("id")
            text = item.get("text")
            if not isinstance(text, str):
                raise ValueError("missing or non-string field 'text'")
            r = classify(text)
            out = {
                "id": item_id,
                "pillar": r.pillar,
                "subtopic": r.subtopic,
                "score": r.score,
                "matched": r.matched,  # a tuple encodes as a JSON array
                "secondary": r.secondary,
            }
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            out = {"id": item_id, "line": n, "error": str(exc)}
        write(encode(out) + "\n")


@click.group("rules")
def rules() -> None:
    """Check and improve the pillar rules file."""


@rules.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def rules_check(ctx: click.Context, path: Path | None) -> None:
    """Validate a rules file; exits 1 and lists each problem with its line number."""
    path = _rules_path(ctx, path)
    shown = str(path) if path is not None else "handlers/rules/pillars.toml (packaged)"
    problems = check_rules(path)
    for p in problems:
        click.echo(f"{shown}:{p.line}: {p.message}", err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {shown}", err=True)
        ctx.exit(1)
    tagger = Tagger.from_path(path)
    click.echo(f"OK: {shown} - {len(tagger.subtopics())} sub-topics, {len(tagger.terms)} terms")


@rules.command("suggest")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite database (default: the bot's database, DATABASE_URL or DATABASE_PATH).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@_RULES_OPTION
@click.pass_context
def rules_suggest(ctx: click.Context, db_path: Path | None, limit: int, rules_path: Path | None) -> None:
    """List candidate keywords from corrected submissions, for an official to review."""
    # --db names a SQLite file; without it the bot's database, PostgreSQL when DATABASE_URL is set.
    target: Path | str | None = db_path
    if target is None:
        target = _settings_default(ctx, "database_url") or _settings_default(ctx, "database_path")
    if target is None:
        raise click.UsageError("give --db PATH")
    if not is_postgres_url(target) and not Path(target).is_file():
        raise click.ClickException(f"database not found: {target}")
    tagger = _load_tagger(ctx, rules_path)
    try:
        with contextlib.closing(connect_read(target)) as conn:
            corrected, others = corrected_and_others(conn)
    except (sqlite3.Error, StorageUnavailable) as exc:
        from storage.pg import redact

        where = redact(str(target)) if is_postgres_url(target) else target
        raise click.ClickException(f"cannot read {where}: {exc}") from exc
    suggestions = suggest_keywords(corrected, others, tagger, limit=limit)
    if not suggestions:
        click.echo(f"No suggestions ({len(corrected)} corrected submissions).")
        return
    click.echo(f"{'pilar':<12} {'kata':<20} {'jumlah':>6} {'skor':>7}")
    for s in suggestions:
        click.echo(f"{s.pillar:<12} {s.term:<20} {s.count:>6} {s.score:>7.2f}")
    click.echo("Review, then add the useful ones to the rules file and run `suarawarga rules check`.")


# --help goes to tagging_eval's own parser, which lists the options (click's would show none).
@rules.command("eval", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def rules_eval(args: tuple[str, ...]) -> None:
    """Accuracy on the labelled set (same options as python -m handlers.tagging_eval)."""
    from handlers.tagging_eval import main as eval_main

    sys.exit(eval_main(list(args)))


@rules.command("fit")
@click.argument("labelled", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rules file to write (the input is not changed).",
)
@click.option("--split", "splits", multiple=True, help="Only rows of this split (repeatable; default: every row).")
@click.option("--epochs", default=6, show_default=True, type=click.IntRange(min=1))
@click.option("--step", default=0.2, show_default=True, type=click.FloatRange(min=0.01))
@_RULES_OPTION
@click.pass_context
def rules_fit(
    ctx: click.Context,
    labelled: Path,
    out_path: Path,
    splits: tuple[str, ...],
    epochs: int,
    step: float,
    rules_path: Path | None,
) -> None:
    """Fit the rules' weights to LABELLED.jsonl ({text, pillar, kind, split, id}) and write them to --out.

    Only weights change, so the result is still plain keyword rules an official can read.
    Measure it on messages it was not fitted on before using it (on the real Surabaya set a
    fit on half the development part lowered the other half: bench/RESULTS.md)."""
    from handlers.tagging import _read_rules_text
    from handlers.tagging_eval import evaluate, fit_weights, load_rows, write_weights

    path = _rules_path(ctx, rules_path)
    tagger = _load_tagger(ctx, rules_path)
    try:
        rows = load_rows(labelled)
    except (KeyError, ValueError) as exc:
        raise click.ClickException(f"{labelled}: each line needs id, text, pillar, kind, split ({exc})") from exc
    if splits:
        rows = [r for r in rows if r.split in splits]
    if not rows:
        raise click.ClickException("no labelled rows to fit on")
    changes = fit_weights(tagger, rows, epochs=epochs, step=step)
    text, _ = _read_rules_text(path)
    out_text = write_weights(text, changes)
    fitted = Tagger.from_text(out_text, name=str(out_path))
    out_path.write_text(out_text, encoding="utf-8")
    before, after = evaluate(tagger, rows), evaluate(fitted, rows)
    click.echo(
        f"{len(changes)} weights changed; on these {len(rows)} rows: accuracy {before.accuracy:.1%} -> {after.accuracy:.1%}"
    )
    click.echo(f"Wrote {out_path}. Measure it on other rows, then `suarawarga rules check {out_path}`.")
