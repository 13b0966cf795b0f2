"""Dispatch: the right unit, a deadline in working time, and the whole case lifecycle."""
