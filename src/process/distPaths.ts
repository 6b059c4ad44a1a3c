// findBuilt lives in core (the Python fix engine needs it too); re-exported for the host side.
export { findBuilt } from '../core/util/distPaths';
