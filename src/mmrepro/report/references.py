"""Published numbers, one YAML file per paper under `references/` (the project's own copy).

Schema of `references/<paper>.yaml`:
    short: "Gulati et al. 2020"      # how the table names the source
    citation: "Authors, Title, Venue Year (arXiv id)"
    note: "optional: why there is nothing to compare against, or how the entries were sourced"
    recipe: {epochs: 100, ...}     # optional: the full profile's config as shipped = the paper's recipe
    headline: [wer, cer]           # optional: the metrics users compare (the summary's headline is the first;
                                   # DVC's metrics view lists these); default: the published entries' metrics
    claims:                        # optional: claims the paper makes without table values (plots);
      - "..."                      # listed under the report's notes, once, not on every row
    entries:                       # may be empty
      - metric: wer                # must equal the `metric` of our Result to be paired with it
        value: 2.1
        scale: x100                # x100 (percent / caption metrics as printed) or raw
        dataset: librispeech
        split: test-clean
        source: "Table 2, Conformer (L), no LM"
        confidence: confirmed      # confirmed (read in the paper) | secondary (quoted elsewhere)
        variant: transducer        # optional: which of our variants this number is for
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PublishedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    value: float
    scale: Literal["x100", "raw"]
    dataset: str
    split: str
    source: str = Field(min_length=1)
    confidence: Literal["confirmed", "secondary"]
    variant: str | None = None


class References(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    short: str = Field(min_length=1)
    citation: str = Field(min_length=1)
    note: str | None = None
    claims: list[str] = Field(default_factory=list)
    entries: list[PublishedEntry] = Field(default_factory=list)
    # The paper's own training recipe in our config keys: the `full` profile as shipped in configs/<paper>.yaml
    # (tests/test_recipes.py keeps the two equal). A run whose resolved config differs in any key is
    # `not comparable: recipe differs (<keys>)`. Empty: the paper states no recipe we replicate.
    recipe: dict[str, Any] = Field(default_factory=dict)
    headline: list[str] = Field(default_factory=list)

    def compared(self) -> list[str]:
        """The metrics users compare for this paper, headline first."""
        return self.headline or list(dict.fromkeys(e.metric for e in self.entries))


def load_references(paper: str, root: Path = Path("references")) -> References:
    path = root / f"{paper}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: every paper needs a references file (entries may be empty)")
    try:
        return References.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
