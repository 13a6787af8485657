"""Streamlit-side helpers shared by the pages (the engine is lenet_core)."""
