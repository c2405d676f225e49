"""Shared pieces of the config models: the strict base model, methods, sizes."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from proxy.config.values import check_header_name, check_method

KIB = 1024
MIB = 1024 * KIB

Method = Annotated[str, AfterValidator(check_method)]
HeaderName = Annotated[str, AfterValidator(check_header_name)]


class StrictModel(BaseModel):
    """Unknown keys are errors; a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
