from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from regqa.qa import views as qa_views

urlpatterns = [
    path("", qa_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("regqa.qa.urls")),
    path("documents/", include("regqa.documents.urls")),
    path("audit/", include("regqa.audit.urls")),
    path("admin/", admin.site.urls),
]
