"""Teachers: language-model text encoders (with a content-hash cache) and text templates.

Importing this package is fast: transformers and sentence-transformers load only when a
TextEncoder is built.
"""

from distillrec.teachers.cache import CacheInfo, default_cache_dir, encode_cached
from distillrec.teachers.encoders import POOLINGS, TextEncoder, pool, resolve_model
from distillrec.teachers.templates import (DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, DerivedField,
                                           TextTemplate, history_texts)

__all__ = ["CacheInfo", "DEFAULT_ITEM_TEMPLATE", "DEFAULT_USER_TEMPLATE", "DerivedField", "POOLINGS",
           "TextEncoder", "TextTemplate", "default_cache_dir", "encode_cached", "history_texts", "pool",
           "resolve_model"]
