"""HTTP routes: health (no auth), tenant pages, admin pages."""
