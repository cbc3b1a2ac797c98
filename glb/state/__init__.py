"""glb's durable and shared state: the operator drains, in one JSON file written atomically
(`glb.state.file`), the drain controls that save before they apply (`glb.state.durable`), and,
with `state.redis`, the drains shared by several instances through Redis (`glb.state.redis_store`
for the store's format and calls, `glb.state.shared` for following it and the re-join rule)."""
