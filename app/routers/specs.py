"""Checking a network before it trains: each layer's output shape and cost, the
totals, and an estimate of its seconds per epoch on this server, or why it cannot
be trained here (the layer at fault and the reason, or the limit it passes)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from cnn.cost import spec_report
from cnn.model import SpecError

from ..dependencies import UNAUTHORIZED, get_manager, require_read
from ..run_record import build_run
from ..runs import RunManager
from ..schemas import SpecCheck, SpecCheckRequest, SpecProblem

router = APIRouter(prefix="/api/specs", tags=["specs"], dependencies=[Depends(require_read)],
                   responses=UNAUTHORIZED)


def problem(exc: ValueError) -> JSONResponse:
    """A 422 that says what is wrong and, for a spec's fault, at which layer."""
    body = {"detail": str(exc), "layer": getattr(exc, "layer", None),
            "layer_type": getattr(exc, "layer_type", None)}
    return JSONResponse(body, status_code=422)


@router.post("/check", response_model=SpecCheck,
             responses={422: {"model": SpecProblem,
                              "description": "a spec that cannot be built, or is over one of "
                                             "the server's limits: the layer at fault (index "
                                             "and type) and the reason, or the limit, its "
                                             "environment variable and the value"}},
             summary="Check a network spec: shapes, parameters, multiply-adds, time",
             description="The same checks as POST /api/runs makes of a `spec`, against the "
                         "same limits. `seconds_per_epoch` is estimated for the settings of "
                         "`preset` (with any overrides given) from a calibration of this "
                         "server's speed, measured once (the first check may take a second).")
def check_spec(request: SpecCheckRequest, manager: RunManager = Depends(get_manager)):
    settings = manager.settings
    try:
        _, spec, config = build_run(request.preset, request.overrides(), None,
                                    settings.model_limits, request.spec,
                                    manager.calibration.get)
    except SpecError as exc:  # LimitError too
        return problem(exc)
    except ValueError as exc:  # an unknown preset, a training setting out of range
        return JSONResponse({"detail": str(exc), "layer": None, "layer_type": None},
                            status_code=422)
    calibration = manager.calibration.get()  # measured by build_run by now
    limits = settings.model_limits
    return {
        **spec_report(spec, config, calibration),
        "limits": {"layers": limits.layers, "parameters": limits.parameters,
                   "multiply_adds": limits.multiply_adds,
                   "values_per_image": limits.values_per_image,
                   "run_memory_mb": limits.run_memory_bytes // 2**20,
                   "run_minutes": limits.run_seconds // 60},
    }
