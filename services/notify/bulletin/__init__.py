"""The weekly bulletin (工作周报): notify's own projection of case and score events, the Monday schedule,
and the bilingual HTML / Markdown / PDF editions archived under `var/bulletins/<week>/`."""
