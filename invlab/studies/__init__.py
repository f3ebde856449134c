"""The compute behind each notebook, one module per topic (notebooks hold only the calls)."""
