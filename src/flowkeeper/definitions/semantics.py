"""Checks the JSON schema cannot express, run on a schema-valid document.

* task names are unique within one task list;
* flow directives (``then``) name ``continue``, ``exit``, ``end`` or a task of the same
  list (DESIGN.md: anything else makes the definition invalid);
* references to reusable components (``use.errors``, ``use.retries``,
  ``use.authentications``, ``use.timeouts``, ``use.catalogs``) exist;
* features Flowkeeper does not run are refused up front, with their name, rather
  than failing an instance half-way;
* inline data schemas (``input``/``output``/``export``) are themselves valid JSON Schemas.

The same walk indexes every task by its reference (``/do/0/getPet``) for
:meth:`Definition.task_at`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkeeper.definitions.cron import CronError, parse_cron
from flowkeeper.definitions.data_schemas import schema_problem
from flowkeeper.definitions.schema_compiler import TASK_KINDS
from flowkeeper.definitions.schema_errors import escape
from flowkeeper.errors import Problem

DIRECTIVES = frozenset({"continue", "exit", "end"})
"""Flow directives that are not task names."""

UNSUPPORTED_CALLS = frozenset({"grpc", "asyncapi", "a2a", "mcp"})
"""Call kinds the schema knows and Flowkeeper does not run."""

TOP_LEVEL_KEYS = ("document", "input", "use", "do", "timeout", "output", "schedule", "evaluate")
"""The workflow properties of dsl-reference.md; the schema lets any other key through."""

TaskIndex = dict[str, dict[str, Any]]


class SemanticChecker:
    """One pass over a schema-valid document: collects problems and indexes tasks."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.problems: list[Problem] = []
        self.tasks: TaskIndex = {}
        use = document.get("use") or {}
        self.use: Mapping[str, Any] = use if isinstance(use, Mapping) else {}

    def run(self) -> list[Problem]:
        """Check the whole document; returns the problems (also kept in ``problems``)."""
        doc = self.document
        for key in doc:
            if key not in TOP_LEVEL_KEYS:
                self._add(
                    f"/{escape(key)}",
                    f"unknown workflow property {key!r} (allowed: {', '.join(TOP_LEVEL_KEYS)})",
                )
        self._evaluate(doc.get("evaluate"))
        if "extensions" in self.use:
            self._add("/use/extensions", "extensions (use.extensions) are not supported by Flowkeeper")
        self._timeout(doc.get("timeout"), "/timeout")
        self._schedule(doc.get("schedule"))
        self._data_schemas(doc, "")
        for name, catalog in (self.use.get("catalogs") or {}).items():
            self._endpoint(catalog.get("endpoint"), f"/use/catalogs/{escape(name)}/endpoint")
        for name, function in (self.use.get("functions") or {}).items():
            # A reusable function is one task outside any list: no siblings to jump to.
            pointer = f"/use/functions/{escape(name)}"
            self.tasks[pointer] = function
            self._task(function, pointer, frozenset())
        self._task_list(doc.get("do") or [], "/do")
        return self.problems

    def _add(self, pointer: str, message: str) -> None:
        self.problems.append(Problem(pointer, message))

    def _schedule(self, schedule: Any) -> None:
        """One way of scheduling at a time, and a cron expression that parses (the
        service checks the rest of a schedule when it is deployed)."""
        if not isinstance(schedule, Mapping) or not schedule:
            return
        kinds = [k for k in ("every", "cron", "after", "on") if k in schedule]
        if len(kinds) > 1:
            self._add(
                "/schedule", "set exactly one of every, cron, after and on (their combination has no meaning)"
            )
        if "cron" in schedule:
            try:
                parse_cron(schedule["cron"])
            except CronError as exc:
                self._add("/schedule/cron", str(exc))

    # --- structure ------------------------------------------------------------------

    def _task_list(self, items: list[Mapping[str, Any]], pointer: str) -> None:
        first_seen: dict[str, str] = {}
        entries: list[tuple[str, dict[str, Any], str]] = []
        for index, item in enumerate(items):
            for name, body in item.items():
                task_pointer = f"{pointer}/{index}/{escape(name)}"
                if name in first_seen:
                    self._add(task_pointer, f"duplicate task name {name!r} (first at {first_seen[name]})")
                else:
                    first_seen[name] = task_pointer
                entries.append((name, body, task_pointer))
        siblings = frozenset(first_seen)
        for _name, body, task_pointer in entries:
            self.tasks[task_pointer] = body
            self._task(body, task_pointer, siblings)

    def _task(self, task: Mapping[str, Any], pointer: str, siblings: frozenset[str]) -> None:
        self._then(task.get("then"), f"{pointer}/then", siblings)
        self._timeout(task.get("timeout"), f"{pointer}/timeout")
        self._data_schemas(task, pointer)
        kind = next((k for k in TASK_KINDS if k in task and not (k == "do" and "for" in task)), None)
        if kind == "call":
            self._call(task, pointer)
        elif kind == "do":
            self._task_list(task["do"], f"{pointer}/do")
        elif kind == "for":
            self._task_list(task.get("do") or [], f"{pointer}/do")
        elif kind == "fork":
            self._task_list(task["fork"]["branches"], f"{pointer}/fork/branches")
        elif kind == "listen":
            foreach = task.get("foreach")
            if foreach is not None:
                self._data_schemas(foreach, f"{pointer}/foreach")
                self._task_list(foreach.get("do") or [], f"{pointer}/foreach/do")
        elif kind == "raise":
            error = task["raise"]["error"]
            if isinstance(error, str):
                self._reference("errors", error, f"{pointer}/raise/error", "error")
        elif kind == "run":
            self._run(task["run"], f"{pointer}/run")
        elif kind == "switch":
            defaults = 0
            for index, case in enumerate(task["switch"]):
                for case_name, body in case.items():
                    case_pointer = f"{pointer}/switch/{index}/{escape(case_name)}"
                    self._then(body.get("then"), f"{case_pointer}/then", siblings)
                    if body.get("when") is None:
                        defaults += 1
                        if defaults > 1:
                            # The first case without `when` always matches: this one never could.
                            self._add(
                                case_pointer,
                                "a switch may have only one default case (a case without `when`)",
                            )
        elif kind == "try":
            self._task_list(task["try"], f"{pointer}/try")
            catch = task["catch"]
            retry = catch.get("retry")
            if isinstance(retry, str):
                self._reference("retries", retry, f"{pointer}/catch/retry", "retry policy")
            if "do" in catch:
                self._task_list(catch["do"], f"{pointer}/catch/do")

    # --- individual checks ----------------------------------------------------------

    def _then(self, target: Any, pointer: str, siblings: frozenset[str]) -> None:
        if target is None or target in DIRECTIVES or target in siblings:
            return
        names = sorted(siblings)
        listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        where = f"one of the tasks {listed}" if siblings else "nothing else here"
        self._add(
            pointer,
            f"flow directive {target!r} is not continue, exit, end or a task of the same list ({where})",
        )

    def _reference(self, section: str, name: str, pointer: str, what: str) -> None:
        defined = self.use.get(section) or {}
        if name not in defined:
            known = f" (defined: {', '.join(sorted(defined))})" if defined else ""
            self._add(pointer, f"{what} {name!r} is not defined in use.{section}{known}")

    def _timeout(self, timeout: Any, pointer: str) -> None:
        if isinstance(timeout, str):
            self._reference("timeouts", timeout, pointer, "timeout")

    def _authentication(self, policy: Any, pointer: str) -> None:
        # Only {use: NAME} names a reusable policy; {basic: {use: NAME}} names a secret.
        if isinstance(policy, Mapping) and isinstance(policy.get("use"), str):
            self._reference("authentications", policy["use"], f"{pointer}/use", "authentication policy")

    def _endpoint(self, endpoint: Any, pointer: str) -> None:
        if isinstance(endpoint, Mapping):
            self._authentication(endpoint.get("authentication"), f"{pointer}/authentication")

    def _resource(self, resource: Any, pointer: str) -> None:
        if isinstance(resource, Mapping):
            self._endpoint(resource.get("endpoint"), f"{pointer}/endpoint")

    def _call(self, task: Mapping[str, Any], pointer: str) -> None:
        call = task["call"]
        args = task.get("with") or {}
        if call in UNSUPPORTED_CALLS:
            self._add(f"{pointer}/call", f"call: {call} is not supported by Flowkeeper")
        elif call == "http":
            self._endpoint(args.get("endpoint"), f"{pointer}/with/endpoint")
        elif call == "openapi":
            self._resource(args.get("document"), f"{pointer}/with/document")
            self._authentication(args.get("authentication"), f"{pointer}/with/authentication")
        elif "@" in call and "://" not in call:
            # Catalog form: {function}:{version}@{catalog}.
            function, _, catalog = call.rpartition("@")
            if not function or ":" not in function or not catalog:
                self._add(
                    f"{pointer}/call", f"cataloged function {call!r} must be written name:version@catalog"
                )
            else:
                self._reference("catalogs", catalog, f"{pointer}/call", "catalog")

    def _run(self, run: Mapping[str, Any], pointer: str) -> None:
        if "container" in run:
            self._add(f"{pointer}/container", "run: container is not supported by Flowkeeper")
        script = run.get("script")
        if isinstance(script, Mapping):
            self._resource(script.get("source"), f"{pointer}/script/source")

    def _evaluate(self, evaluate: Any) -> None:
        if evaluate is None:
            return
        if not isinstance(evaluate, Mapping):
            self._add("/evaluate", "expected a mapping with 'language' and 'mode'")
            return
        for key in evaluate:
            if key not in ("language", "mode"):
                self._add(
                    f"/evaluate/{escape(key)}", f"unexpected property {key!r} (allowed: language, mode)"
                )
        language = evaluate.get("language", "jq")
        if language != "jq":
            self._add(
                "/evaluate/language",
                f"expression language {language!r} is not supported: Flowkeeper evaluates jq",
            )
        mode = evaluate.get("mode", "strict")
        if mode not in ("strict", "loose"):
            self._add("/evaluate/mode", f"must be strict or loose (got {mode!r})")

    def _data_schemas(self, owner: Mapping[str, Any], pointer: str) -> None:
        for part in ("input", "output", "export"):
            section = owner.get(part)
            if isinstance(section, Mapping) and isinstance(section.get("schema"), Mapping):
                self._data_schema(section["schema"], f"{pointer}/{part}/schema")

    def _data_schema(self, spec: Mapping[str, Any], pointer: str) -> None:
        fmt = str(spec.get("format", "json"))
        if fmt.split(":", 1)[0] != "json":
            self._add(
                f"{pointer}/format", f"schema format {fmt!r} is not supported: Flowkeeper validates json"
            )
        if "resource" in spec and "document" not in spec:
            self._add(
                f"{pointer}/resource",
                "external schemas (schema.resource) are not supported by Flowkeeper; "
                "put the schema inline under schema.document",
            )
            return
        document = spec.get("document")
        if not isinstance(document, (Mapping, bool)):
            self._add(f"{pointer}/document", "expected a JSON Schema (a mapping)")
            return
        problem = schema_problem(document)
        if problem is not None:
            where, message = problem
            self._add(f"{pointer}/document{where}", message)
