"""Import a model-zoo README into a baseline file (`vaccbench import-readme`).

One module per rule:
- `tables`: the model tables (both the GitHub-page text and markdown), the title and paper,
  the family's one source when a table has no source column;
- `transforms`: the evaluation preprocessing, per row, with where each value came from;
- `names`: row names -> keys (safe identifiers) and architectures, `ALIASES`;
- `mapping`: rows -> baseline entries; `writing`: merge into the baseline file.
"""

from .mapping import ImportedModel, map_models
from .names import ALIASES, Alias, installed_arch, model_key, normalise
from .readme import Readme, parse_readme, read_readme
from .tables import Problem
from .transforms import (Value, derive, library_defaults, parse_transforms, read_recipe, timm_defaults,
                         torchvision_defaults)
from .writing import ImportResult, import_readme, merge_baseline

__all__ = ["ALIASES", "Alias", "ImportResult", "ImportedModel", "Problem", "Readme", "Value", "derive",
           "import_readme", "installed_arch", "library_defaults", "map_models", "merge_baseline",
           "model_key", "normalise", "parse_readme", "parse_transforms", "read_readme", "read_recipe",
           "timm_defaults", "torchvision_defaults"]
