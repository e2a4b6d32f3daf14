"""URLs of the library, document files, pages and passages."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.library, name="library"),
    path("rows/", views.library_rows, name="library_rows"),
    path("upload/", views.upload, name="upload"),
    path("<int:pk>/delete/", views.delete, name="document_delete"),
    path("<int:pk>/retry/", views.retry, name="document_retry"),
    path("<int:pk>/edit/", views.edit, name="document_edit"),
    path("<int:pk>/file/", views.document_file, name="document_file"),
    path("<int:pk>/pages/<int:number>/", views.page, name="document_page"),
    path("passages/<int:chunk_id>/", views.passage, name="passage"),
]
