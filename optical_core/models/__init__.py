"""Encoders: the teacher, the student families, me5 conversion and vocabulary trimming."""
