"""The mobile API: one flask-smorest Blueprint per resource; views are thin."""
