"""OmegaConf resolvers the project's configs use (registered when ``components`` or ``cli`` is imported).

``${pick:<key>,{<choice>: <value>, ...}}`` -- the value for ``key`` (e.g. ``${benchmark.split}``), so one
tuning file holds a paper's per-split or per-corpus settings (SimNPO on TOFU forget05 vs forget10).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from unlearn_cli.errors import UserError, suggest


def pick(key, table):
    """``table[key]``; a UserError naming the known choices otherwise."""
    if key not in table:
        raise UserError(f"no setting for '{key}' in {dict(table)};{suggest(str(key), table)} known: "
                        f"{', '.join(map(str, table))}")
    return table[key]


def register() -> None:
    OmegaConf.register_new_resolver("pick", pick, replace=True)


register()
