"""glb's local durable state: the operator drains, in one JSON file written atomically
(`glb.state.file`), and the drain controls that save before they apply (`glb.state.durable`)."""
