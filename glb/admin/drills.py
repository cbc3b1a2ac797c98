"""The failover drill routes of the admin API (`glb.admin.drill_runner` runs the drills).

    POST   /api/v1/drills        {"cluster": "eu-west", "duration": "60s", "mode": "drain"|"fail",
                                  "force": false}: start one (201, the drill)
    GET    /api/v1/drills        the drills kept, running ones first, then newest first
    GET    /api/v1/drills/{id}   one drill, with its report (figures so far while it runs)
    DELETE /api/v1/drills/{id}   end a running drill now: the cluster is restored (200)

A duration is the configuration's (`90s`, `250ms`, `2m`, or seconds), 1 s to 1 h. Refusals are
4xx with a sentence (`DrillRefused`); the changing calls need the admin token, like drains, and
are logged with who made them.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from glb.admin.drains import read_body
from glb.admin.drill_runner import DrillRefused, DrillRequest, DrillRunner
from glb.core.drills import Drill, DrillMode, DrillNotSaved, is_drill_id

logger = logging.getLogger(__name__)

Json = dict[str, object]

DRILLS: Final = web.AppKey("glb_drills", DrillRunner)
DRILL_KEYS: Final = frozenset({"cluster", "duration", "mode", "force"})
SHORTEST: Final = 1.0  # seconds
LONGEST: Final = 3600.0


def drill_json(drill: Drill, now: float) -> Json:
    """How the API shows a drill; a running one also has the seconds it has left."""
    body = drill.to_json()
    if drill.running:
        body["time_left_seconds"] = round(max(0.0, drill.ends - now), 1)
    return body


def running_drills(app: web.Application) -> list[Json] | None:
    """The running drills' JSON, for the services view (the status page); None without drills."""
    runner = app.get(DRILLS)
    if runner is None:
        return None
    now = runner.now()
    return [drill_json(d, now) for d in runner.drills() if d.running]


def drill_request(body: Json, runner: DrillRunner) -> DrillRequest:
    """What a POST body asks for; 400 with a sentence when it cannot be used."""
    cluster = body.get("cluster")
    if not isinstance(cluster, str) or not cluster or len(cluster) > 253:
        raise web.HTTPBadRequest(text='"cluster" must be the name of a configured cluster')
    mode = body.get("mode", DrillMode.DRAIN.value)
    if mode not in {m.value for m in DrillMode}:
        allowed = " or ".join(f'"{m.value}"' for m in DrillMode)
        raise web.HTTPBadRequest(text=f'"mode" must be {allowed}')
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise web.HTTPBadRequest(text='"force" must be true or false')
    return DrillRequest(cluster, DrillMode(str(mode)), _duration(body, runner), force)


def _duration(body: Json, runner: DrillRunner) -> float:
    if "duration" not in body:
        raise web.HTTPBadRequest(text='"duration" is required, e.g. "60s"')
    try:
        seconds = runner.parse_duration(body["duration"])
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f'"duration": {str(exc)[:200]}') from None
    if not SHORTEST <= seconds <= LONGEST:
        raise web.HTTPBadRequest(text=f'"duration" must be from {SHORTEST:g}s to {LONGEST:g}s')
    return seconds


def _who(request: web.Request) -> str:
    """Who made a changing call: the admin token is one, unnamed, so its caller's address."""
    return f"api from {request.remote or 'an unknown address'}"


async def start_drill(request: web.Request) -> web.Response:
    runner = request.app[DRILLS]
    wanted = drill_request(await read_body(request, DRILL_KEYS), runner)
    try:
        drill = await runner.start(wanted, _who(request))
    except DrillRefused as exc:
        raise _refusal(exc) from None
    except DrillNotSaved as exc:
        logger.error("admin API: drill of %s not started: %s", wanted.cluster, exc)
        raise web.HTTPInternalServerError(text=f"not started: {exc}") from None
    return web.json_response(drill_json(drill, runner.now()), status=201)


async def list_drills(request: web.Request) -> web.Response:
    runner = request.app[DRILLS]
    now = runner.now()
    return web.json_response({"drills": [drill_json(d, now) for d in runner.drills()]})


async def get_drill(request: web.Request) -> web.Response:
    runner = request.app[DRILLS]
    drill = runner.get(_drill_id(request))
    if drill is None:
        raise web.HTTPNotFound(text=f"no drill {request.match_info['id'][:40]!r}")
    return web.json_response(drill_json(drill, runner.now()))


async def end_drill(request: web.Request) -> web.Response:
    runner = request.app[DRILLS]
    try:
        drill = await runner.cancel(_drill_id(request), _who(request))
    except DrillRefused as exc:
        raise _refusal(exc) from None
    return web.json_response(drill_json(drill, runner.now()))


def _drill_id(request: web.Request) -> str:
    drill_id = request.match_info["id"]
    if not is_drill_id(drill_id):
        raise web.HTTPNotFound(
            text=f"no drill {drill_id[:40]!r} (ids look like 20261206T224100Z-3fa2c1)"
        )
    return drill_id


def _refusal(refused: DrillRefused) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        500: web.HTTPInternalServerError,
    }
    return kinds.get(refused.status, web.HTTPBadRequest)(text=str(refused))


DRILL_ROUTES: Final[tuple[web.RouteDef, ...]] = (
    web.post("/api/v1/drills", start_drill),
    web.get("/api/v1/drills", list_drills),
    web.get("/api/v1/drills/{id}", get_drill),
    web.delete("/api/v1/drills/{id}", end_drill),
)
