"""`riskc rules [NAME]`: the standard library with its docs, parameters and defaults (PRODUCT.md
§5), read from the rule files themselves. `--markdown` prints the reference that docs/rules.md is
generated from, so the docs cannot drift from the rules."""

from __future__ import annotations

import click

from riskc.engine.cli.common import EXIT_OK

GENERATED_NOTE = (
    "<!-- Generated from stdlib_rules/*.risk by `riskc rules --markdown > docs/rules.md`. Do not edit\n"
    "     by hand: edit the rule files and regenerate (tests/engine/test_rules_cmd.py fails when stale). -->"
)


@click.command("rules")
@click.argument("name", required=False)
@click.option("--markdown", is_flag=True, help="Print the reference as Markdown (what docs/rules.md holds).")
def command(name: str | None, markdown: bool) -> None:
    """List the standard library's rules, or show one rule (NAME) in full."""
    from riskc.dsl.library import library_rules

    rules = library_rules()
    if name is not None:
        rules = [_find(name, rules)]
    if markdown:
        click.echo(markdown_reference(rules) if name is None else _markdown_rule(rules[0]), nl=False)
    elif name is None:
        _print_list(rules)
    else:
        _print_rule(rules[0])
    raise SystemExit(EXIT_OK)


def _find(name: str, rules):
    for rule in rules:
        if rule.name == name:
            return rule
    from riskc.dsl.typecheck import suggest

    hint = suggest(name, [r.name for r in rules])
    raise click.UsageError(f"no standard rule `{name}`" + (f"; {hint}" if hint else "; `riskc rules` lists them"))


# ---- the terminal ----------------------------------------------------------------------------------


def _print_list(rules) -> None:
    from rich.markup import escape
    from rich.padding import Padding

    from riskc.engine.daemon.console import make_console

    console = make_console()
    theme = None
    for rule in rules:
        if rule.file != theme:
            theme = rule.file
            console.print(
                f"\n[bold underline]{escape(rule.theme.rstrip('.'))}[/bold underline] [dim]({rule.file})[/dim]"
            )
        console.print(f"  [bold cyan]{escape(rule.signature)}[/bold cyan]")
        console.print(Padding(escape(rule.summary), (0, 0, 0, 6)))
        console.print(Padding(f"[dim]on breach:[/dim] {escape(', '.join(rule.actions))}", (0, 0, 0, 6)))
    console.print("\n`riskc rules NAME` shows one rule in full; switch one on with `use NAME(param: value, ...)`.")


def _print_rule(rule) -> None:
    from rich.markup import escape
    from rich.table import Table

    from riskc.engine.daemon.console import make_console

    console = make_console()
    console.print(f"[bold]{escape(rule.signature)}[/bold]  [dim]({rule.file}, severity {rule.severity})[/dim]\n")
    console.print(escape(_paragraphs(rule.doc)) + "\n")
    if rule.params:
        table = Table("parameter", "type", "default")
        for p in rule.params:
            table.add_row(p.name, escape(p.type), escape(_default_text(p)))
        console.print(table)
    console.print(f"[bold]runs[/bold]      {escape(_runs(rule))}")
    console.print(f"[bold]fires when[/bold] {escape(rule.when)}")
    console.print(f"[bold]then[/bold]      {escape(', '.join(rule.actions))}")


def _param_text(p) -> str:
    return f"{p.name}: {p.type}" + (f" = {p.default}" if p.default is not None else "")


def _default_text(p) -> str:
    if p.default is not None:
        return p.default
    return "none (optional)" if not p.required else "required"


def _runs(rule) -> str:
    when = f"on {', '.join(rule.on)} events" if rule.on else "on every event and clock tick"
    return when + (f", for each {rule.binder}" if rule.binder else "")


def _paragraphs(doc: str) -> str:
    return " ".join(doc.split())


# ---- Markdown (docs/rules.md) ----------------------------------------------------------------------


def markdown_reference(rules) -> str:
    """The whole reference: an overview table, then one section per file and rule."""
    lines = [
        "# Standard library",
        "",
        GENERATED_NOTE,
        "",
        "The rules every policy can switch on with `use NAME(param: value, ...)` (`use NAME(...) as ID`",
        "gives a second instance its own id). They are written in the policy language itself, in",
        "`stdlib_rules/`; each has its tests in `stdlib_rules/tests/` (`riskc test --stdlib`).",
        "",
        "| rule | parameters (defaults) | on breach |",
        "|---|---|---|",
    ]
    for rule in rules:
        params = ", ".join(f"`{_cell(_param_text(p))}`" for p in rule.params) or "—"
        actions = ", ".join(f"`{_cell(a)}`" for a in rule.actions)
        lines.append(f"| [`{rule.name}`](#{rule.name}) | {params} | {actions} |")
    theme = None
    for rule in rules:
        if rule.file != theme:
            theme = rule.file
            lines += ["", f"## {rule.theme.rstrip('.')} (`{rule.file}`)"]
        lines += ["", _markdown_rule(rule).rstrip("\n")]
    return "\n".join(lines) + "\n"


def _markdown_rule(rule) -> str:
    lines = [f"### `{rule.name}`", "", _paragraphs(rule.doc), ""]
    if rule.params:
        lines += ["| parameter | type | default |", "|---|---|---|"]
        lines += [f"| `{p.name}` | `{_cell(p.type)}` | {_cell(_default_markdown(p))} |" for p in rule.params]
        lines.append("")
    lines += [
        f"- **Runs:** {_runs(rule)}",
        f"- **Fires when:** `{rule.when}`",
        f"- **Then:** {', '.join(f'`{a}`' for a in rule.actions)}",
        f"- **Severity:** {rule.severity}",
    ]
    return "\n".join(lines) + "\n"


def _default_markdown(p) -> str:
    if p.default is not None:
        return f"`{p.default}`"
    return "none (optional)" if not p.required else "required"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
