"""Where each module and parameter was built in the user's code, and the TENSORS entry of each
parameter (name, layer, shape, source line).

``nn.Module.__init__`` and ``nn.Parameter.__new__`` are hooked to record where each module /
parameter was built in the user's code (the first stack frame outside torch, the probe, the standard
library and installed packages; a module's own ``__init__`` frames are skipped, so ``model = Net()``
rather than the ``super().__init__()`` line), and for modules a library builds inside that line
(transformers), the library's line too. ``nn.Module.__setstate__`` does the same for modules
``copy.deepcopy`` makes (``nn.TransformerEncoder``'s layers), which never run ``__init__``. Names and
the choice between sites: see ``_describe`` and names.py.
"""
from __future__ import annotations

import functools
import sys
import weakref

import torch

from . import forks, names, sources


class _Known:
    __slots__ = ("id", "ref", "info", "detail_buf")

    def __init__(self, tid, p, info):
        self.id = tid
        self.ref = weakref.ref(p)
        self.info = info
        self.detail_buf = None  # copy of the gradient for the background detail job


class ParameterSites:
    """Probe mixin: module and parameter construction sites, the variable names that root the
    parameters' names, and the TENSORS entries."""

    def _init_parameters(self) -> None:
        self._known = {}  # id(param) -> _Known
        self._tensors = []  # _Known in id order
        self._module_refs = []  # weakrefs to modules, construction order
        self._module_refs_live = 0
        self._module_sites = {}  # id(module) -> (user site, library site) (modules are weak-referenced alongside)
        self._param_sites = {}  # id(parameter) -> (weakref, site)
        self._root_names = {}  # id(module) -> (weakref, variable name found where an optimizer was built)
        self._raw_names = {}  # id(tensor) -> variable name, for tensors given to an optimizer directly

    def _install_modules(self) -> None:
        probe = self

        def module_init(orig):
            @functools.wraps(orig)
            def __init__(self, *args, **kwargs):
                orig(self, *args, **kwargs)
                if forks.pid == probe.pid:
                    try:
                        probe._on_module(self)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("recording a module", e)
            return __init__

        def param_new(orig):
            # Parameter.__new__ is a staticmethod; wrap the function and re-wrap it.
            fn = orig

            def __new__(cls, *args, **kwargs):
                p = fn(cls, *args, **kwargs)
                if forks.pid == probe.pid:
                    try:
                        site = sources.user_call_site(1)
                        if site is not None:
                            probe._param_sites[id(p)] = (weakref.ref(p, probe._forget_param(id(p))), site)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("recording a parameter", e)
                return p
            return __new__

        def module_setstate(orig):
            @functools.wraps(orig)
            def __setstate__(self, state):
                orig(self, state)
                if forks.pid == probe.pid:
                    try:
                        probe._on_module(self)
                    except Exception as e:  # noqa: BLE001
                        probe.warn("recording a copied module", e)
            return __setstate__

        self._patch(torch.nn.Module, "__init__", module_init)
        self._patch(torch.nn.Module, "__setstate__", module_setstate)
        orig_new = torch.nn.Parameter.__dict__["__new__"]
        fn = orig_new.__func__ if isinstance(orig_new, staticmethod) else orig_new
        if not getattr(fn, "_gradscope_wrapped", False):
            w = param_new(fn)
            w._gradscope_wrapped = True
            torch.nn.Parameter.__new__ = staticmethod(w)
            self._installed.append((torch.nn.Parameter, "__new__", orig_new))

    def _on_module(self, m) -> None:
        """Records where ``m`` was built: the user's line and, when a library (transformers) built it
        inside that line, the library's line. Called from ``Module.__init__`` and from
        ``Module.__setstate__``: copies made by ``copy.deepcopy`` (``nn.TransformerEncoder`` clones
        its layer) and unpickled modules never run ``__init__``; their site is the line that copied or
        loaded them."""
        key = id(m)
        sites = self._module_sites
        if key in sites:
            return  # Module.__init__ run twice on one object (multiple inheritance): the first call's site
        site, built = sources.construction_sites(sys._getframe(2), m)
        self._module_refs.append(weakref.ref(m, lambda _r, k=key: sites.pop(k, None)))
        sites[key] = (site, built)
        # Scripts that build modules in every forward pass: keep the list to the live ones.
        if len(self._module_refs) > 2 * self._module_refs_live + 1024:
            self._module_refs = [r for r in self._module_refs if r() is not None]
            self._module_refs_live = len(self._module_refs)

    def _forget_param(self, key):
        sites = self._param_sites
        return lambda _r: sites.pop(key, None)

    def _name_root(self, m, name) -> None:
        old = self._root_names.get(id(m))
        if old is None or old[0]() is not m:
            self._root_names[id(m)] = (weakref.ref(m), name)

    def _describe_new(self, params) -> list:
        """TENSORS entries for parameters seen for the first time."""
        self._name_self_roots()
        index = self._module_index()
        fresh = []
        for p in params:
            tid = len(self._tensors)
            info = self._describe(p, tid, index)
            k = _Known(tid, p, info)
            self._known[id(p)] = k
            self._tensors.append(k)
            fresh.append(info)
        return fresh

    def _name_self_roots(self) -> None:
        """Several root modules named by ``self`` (each built its own optimizer in its ``__init__``,
        and the script keeps them in a plain list: pytorch/examples' Forward-Forward) would all name
        their parameters ``weight`` and ``bias``: each takes the name the script reaches it by from the
        stack (``net.layers.0``), where one is found."""
        selfish = [(k, r) for k, (r, name) in self._root_names.items() if name == "" and r() is not None]
        if len(selfish) < 2:
            return
        frame = sys._getframe(1)
        for k, r in selfish:
            m = r()
            try:
                path = names.path_from_frames(m, frame, sources.is_user_file)
            except Exception:  # noqa: BLE001 - a better name is an aid
                path = None
            if path:
                self._root_names[k] = (r, path)

    def _module_index(self):
        """names.ParameterIndex over the live modules whose construction was seen."""
        mods = []
        alive = []
        seen = set()
        for r in self._module_refs:
            m = r()
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                mods.append(m)
                alive.append(r)
        self._module_refs = alive
        self._module_refs_live = len(alive)
        children = set()
        for m in mods:
            for c in m.children():
                children.add(id(c))
        roots_named = self._root_names

        def variable_of(m):
            hit = roots_named.get(id(m))
            return hit[1] if hit is not None and hit[0]() is m else None

        return names.index_parameters([m for m in mods if id(m) not in children], variable_of)

    def _module_site(self, owner):
        """(user site, library site) of a parameter's module; a module whose construction was not
        seen, or seen outside the user's code, takes the site of the nearest module above it."""
        entry = self._module_sites.get(id(owner.module))
        built = entry[1] if entry is not None else None
        if entry is not None and entry[0] is not None:
            return entry[0], built
        for a in reversed(owner.ancestors):
            up = self._module_sites.get(id(a))
            if up is not None and up[0] is not None:
                return up[0], built if entry is not None else up[1]
        return None, built

    def _describe(self, p, tid, index) -> dict:
        info = self._describe_site(p, tid, index)
        try:
            block = shard_block(p)
        except Exception as e:  # noqa: BLE001
            block = None
            self.warn("reading the shard of %s (its statistics are this rank's shard)" % info["name"], e)
        if block is not None:
            info["shard"] = block
        return info

    def _describe_site(self, p, tid, index) -> dict:
        shape = [int(d) for d in p.shape]
        owners = index.owners.get(id(p))
        psite = self._param_sites.get(id(p))
        psite = psite[1] if psite is not None and psite[0]() is p else None
        if not owners:
            name = self._raw_names.get(id(p)) or "param%d" % tid
            return {"id": tid, "name": name, "layer": name, "layerType": type(p).__name__, "shape": shape, "source": psite}
        owner = owners[0]
        m = owner.module
        site, built = self._module_site(owner)
        if site is None and getattr(self, "distributed", False):
            # A process of the run that received its model built elsewhere (a spawn child unpickles
            # the module the parent built: pytorch/examples' mnist_hogwild): no construction was seen
            # here, so the line is read from the source of the parent module's class.
            site = sources.attribute_site(owner.ancestors[-1] if owner.ancestors else None, m)
        # A parameter created in the user's own module class: its own line is the precise one when the
        # class is the model itself (the root: its construction line would cover every parameter).
        # A user-written layer inside the model (a custom nn.Module built in the model's __init__) is
        # placed, like nn.Linear, on the line that builds it: that is where its findings belong (a bias
        # nn.Parameter far below zero kills the units of THAT layer). And when the model holds several
        # instances of the class, each instance's line tells them apart.
        entry = self._module_sites.get(id(m))
        own_site = entry is not None and entry[0] is not None
        if psite is not None and index.count(owner) <= 1 and (owner.module is owner.root or not own_site) and (
                type(m).__module__ == "__main__"
                or sources.is_user_file(getattr(sys.modules.get(type(m).__module__), "__file__", "") or "")):
            site = psite
        info = {"id": tid, "name": owner.name, "layer": owner.layer or type(m).__name__, "layerType": type(m).__name__,
                "shape": shape, "source": site}
        aliases = [o.name for o in owners[1:]]
        if aliases:
            info["aliases"] = aliases
        if built is not None:
            info["builtIn"] = built
        return info


def shard_block(p):
    """The block of a DTensor parameter this process holds (FSDP2 ``fully_shard``, tensor parallel):
    ``{"offset": [...], "localShape": [...]}`` per dimension of the whole tensor (docs/protocol.md,
    TENSORS ``shard``), or None for a tensor held whole. Reads the DTensor's placements and this
    rank's mesh coordinate only: no collective, nothing a rank waits on."""
    if type(p).__name__ != "DTensor":
        return None
    shape = [int(d) for d in p.shape]
    local = [int(d) for d in p.to_local().shape]
    ways = 1  # the blocks the tensor is cut into (replicas aside)
    for dim, pl in enumerate(p.placements):
        if pl.is_shard():
            ways *= int(p.device_mesh.size(dim))
    if ways <= 1:
        return None  # replicated on every rank, or a mesh of one: the tensor is whole here
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    offset = [min(int(o), d) for o, d in zip(offset, shape)]  # an empty block may start past the end
    if len(offset) != len(shape) or len(local) != len(shape) or any(o + n > d for o, n, d in zip(offset, local, shape)):
        raise ValueError("block %s at %s does not fit shape %s" % (local, offset, shape))
    return {"offset": offset, "localShape": local}
