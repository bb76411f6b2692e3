"""Reports from stored records alone: the verdict table (`table`), figures (`plots`) and the HTML
pages (`html`). Nothing here imports torch or a floor that does."""
