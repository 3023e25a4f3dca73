"""Looking at a chapter: the gallery page (static and live), the contact sheet, the manifest."""
