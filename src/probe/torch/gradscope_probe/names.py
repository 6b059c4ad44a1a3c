"""Names of parameters as the user knows them: ``model.fc1.weight``, ``bert.encoder.layer.0.…``.

A parameter is named by its path from the outermost module the script holds in a variable (the
name found where its optimizer was built; ``self`` gives no prefix, ``self.model`` gives ``model``),
or from its root module when no variable names one. Wrappers that hold the model under an attribute
of their own add nothing to the name: ``torch.compile``'s ``_orig_mod``, FSDP's
``_fsdp_wrapped_module``, activation checkpointing's ``_checkpoint_wrapped_module``, and the
``module`` of ``DistributedDataParallel`` / ``DataParallel``. A parameter reachable under several
paths (tied weights: GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``; a shared submodule)
is named by the first in registration order; the others are its aliases.
"""
from __future__ import annotations

WRAPPER_ATTRS = frozenset(("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module",
                           "_offload_wrapped_module"))
DATA_PARALLEL = frozenset(("DistributedDataParallel", "DataParallel"))
# Bound on module visits when descending again into shared submodules (only to list aliases).
MAX_VISITS = 200_000


class Owner:
    """One path to a parameter: ``name`` (the full parameter name), ``layer`` (its module's name),
    ``module`` (the module holding it), ``ancestors`` (the modules above ``module``, outermost
    first, so ``ancestors[0]`` is the root unless ``module`` is)."""

    __slots__ = ("name", "layer", "module", "ancestors")

    def __init__(self, name, layer, module, ancestors):
        self.name = name
        self.layer = layer
        self.module = module
        self.ancestors = ancestors

    @property
    def root(self):
        return self.ancestors[0] if self.ancestors else self.module


class ParameterIndex:
    """``owners[id(param)]``: the paths to each parameter, the naming one first; ``instances``: how many
    distinct modules of each class each root module holds (see ``count``)."""

    __slots__ = ("owners", "instances")

    def __init__(self):
        self.owners = {}
        self.instances = {}

    def count(self, owner) -> int:
        """Modules of the class of ``owner.module`` in the same model (an EMA copy or a second
        model of the same class does not count)."""
        return self.instances.get((id(owner.root), type(owner.module)), 0)


def _segment(parent, attr):
    if attr in WRAPPER_ATTRS or (attr == "module" and type(parent).__name__ in DATA_PARALLEL):
        return None
    return attr


def index_parameters(roots, variable_of) -> ParameterIndex:
    """Walks every module under ``roots`` (in registration order, like ``named_parameters``).
    ``variable_of(module)`` gives the variable name the script holds it in ("" for ``self``) or None.
    """
    index = ParameterIndex()
    owners = index.owners
    instances = index.instances
    visited = set()
    visits = 0
    for root in roots:
        # (module, name segments, named by a variable, ancestors)
        stack = [(root, (), False, ())]
        while stack:
            m, segs, named, ancestors = stack.pop()
            if not named:
                var = variable_of(m)
                if var is not None:
                    segs = (var,) if var else ()
                    named = True
            first = id(m) not in visited
            if first:
                visited.add(id(m))
                key = (id(root), type(m))
                instances[key] = instances.get(key, 0) + 1
            visits += 1
            layer = ".".join(segs)
            for pn, q in m._parameters.items():
                if q is None:
                    continue
                name = layer + "." + pn if layer else pn
                lst = owners.get(id(q))
                if lst is None:
                    owners[id(q)] = [Owner(name, layer, m, ancestors)]
                elif all(o.name != name for o in lst):
                    lst.append(Owner(name, layer, m, ancestors))
            if not first and visits > MAX_VISITS:
                continue
            below = ancestors + (m,)
            on_path = {id(a) for a in below}
            children = [(attr, c) for attr, c in m._modules.items() if c is not None and id(c) not in on_path]
            for attr, c in reversed(children):
                seg = _segment(m, attr)
                stack.append((c, segs + (seg,) if seg is not None else segs, named, below))
    return index


def path_from_frames(target, frame, is_user_file, max_items: int = 10_000):
    """A name for the module ``target`` as the script reaches it, from the variables of the user's
    frames on the stack above ``frame``, outermost first: ``net.layers.0`` where ``net`` holds a plain
    list ``layers`` of modules (not an ``nn.ModuleList``: the modules in it are roots of their own,
    pytorch/examples' Forward-Forward), or a variable's submodule path. ``self`` variables are skipped
    (the outer frame names the same object). None where none reaches it within ``max_items`` looks."""
    import torch

    Module = torch.nn.Module

    def _of_user_class(v) -> bool:
        code = getattr(getattr(type(v), "__init__", None), "__code__", None)
        return not isinstance(v, type) and code is not None and is_user_file(code.co_filename)

    frames = []
    f = frame
    while f is not None:
        if is_user_file(f.f_code.co_filename):
            frames.append(f)
        f = f.f_back
    budget = [max_items]

    def within(var, v, depth=0):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if v is target:
            return var
        if isinstance(v, Module):
            for sub, m in v.named_modules():
                budget[0] -= 1
                if m is target:
                    return var + "." + sub if sub else var
                if budget[0] < 0:
                    return None
        if isinstance(v, (list, tuple, dict)):
            return _in_container(var, v)
        # Plain lists of modules held by a module, and, one level down from a variable holding an
        # instance of the script's own class (a Net that is no nn.Module, a trainer), its modules too.
        user = depth == 0 and _of_user_class(v)
        if not (user or isinstance(v, Module)):
            return None
        try:
            attrs = list(vars(v).items())
        except TypeError:
            return None
        for attr, c in attrs:
            if attr.startswith("_"):
                continue
            if isinstance(c, (list, tuple, dict)):
                got = _in_container(var + "." + attr, c)
            elif user and (isinstance(c, Module) or c is target):
                got = within(var + "." + attr, c, 1)
            else:
                continue
            if got:
                return got
        return None

    def _in_container(var, c):
        items = c.items() if isinstance(c, dict) else enumerate(c)
        for k, x in items:
            budget[0] -= 1
            if budget[0] < 0:
                return None
            if isinstance(x, Module) or x is target:
                got = within("%s.%s" % (var, k), x, 1)
                if got:
                    return got
        return None

    for f in reversed(frames):
        for var, v in list(f.f_locals.items()):
            if var == "self" or var.startswith("_"):
                continue
            got = within(var, v)
            if got:
                return got
    return None
