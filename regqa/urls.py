from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from regqa.api import views as api_views
from regqa.api.api import urls as api_urls
from regqa.qa import views as qa_views

urlpatterns = [
    path("", qa_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("regqa.qa.urls")),
    path("documents/", include("regqa.documents.urls")),
    path("audit/", include("regqa.audit.urls")),
    path("api/", api_urls()),
    path("tokens/", api_views.token_list, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", api_views.token_revoke, name="api_token_revoke"),
    path("admin/", admin.site.urls),
]
