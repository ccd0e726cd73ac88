"""The personalization protocols as plain functions: a reference kit built once from a reference
database, patient-specific and zero-shot personal models, one record end to end."""
