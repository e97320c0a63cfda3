"""The comparison report: our numbers beside the published ones."""
